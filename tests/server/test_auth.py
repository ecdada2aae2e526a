"""Tokens: minting, verification and every way a token can be refused."""

from __future__ import annotations

import time

import jwt
import pytest

from livekit_rpc.server.auth import (
    TokenError,
    bearer_token,
    mint_token,
    verify_token,
)

KEY, SECRET = "devkey", "secret"

# Test-made tokens use the short dev secret on purpose.
pytestmark = pytest.mark.filterwarnings("ignore::jwt.InsecureKeyLengthWarning")


def test_round_trip_carries_claims() -> None:
    token = mint_token(
        KEY,
        SECRET,
        "alice",
        "r1",
        name="Alice",
        metadata="m",
        attributes={"a": "1"},
        can_update_own_metadata=False,
    )
    claims = verify_token(token, KEY, SECRET)
    assert claims.identity == "alice"
    assert claims.room == "r1"
    assert claims.name == "Alice"
    assert claims.metadata == "m"
    assert dict(claims.attributes) == {"a": "1"}
    assert claims.can_publish_data is True
    assert claims.can_update_own_metadata is False
    assert claims.expires_at > time.time()


def test_token_format_matches_livekit() -> None:
    token = mint_token(KEY, SECRET, "alice", "r1", ttl=600)
    header = jwt.get_unverified_header(token)
    payload = jwt.decode(token, options={"verify_signature": False})
    assert header["alg"] == "HS256"
    assert payload["iss"] == KEY
    assert payload["sub"] == "alice"
    assert payload["exp"] - payload["nbf"] == 600
    assert payload["video"]["roomJoin"] is True
    assert payload["video"]["room"] == "r1"
    assert payload["video"]["canPublishData"] is True
    assert payload["video"]["canUpdateOwnMetadata"] is True


def test_livekit_api_accepts_our_tokens_and_we_accept_theirs() -> None:
    from livekit import api

    ours = mint_token(KEY, SECRET, "alice", "r1", attributes={"k": "v"})
    theirs_view = api.TokenVerifier(KEY, SECRET).verify(ours)
    assert theirs_view.identity == "alice"
    assert theirs_view.video is not None and theirs_view.video.room == "r1"
    assert theirs_view.attributes == {"k": "v"}

    theirs = (
        api.AccessToken(KEY, SECRET)
        .with_identity("bob")
        .with_name("Bob")
        .with_grants(api.VideoGrants(room_join=True, room="r2"))
        .to_jwt()
    )
    claims = verify_token(theirs, KEY, SECRET)
    assert (claims.identity, claims.room, claims.name) == ("bob", "r2", "Bob")
    assert claims.can_publish_data is True
    assert claims.can_update_own_metadata is False  # LiveKit's default


def test_can_publish_data_false_survives() -> None:
    token = mint_token(KEY, SECRET, "mute", "r1", can_publish_data=False)
    assert verify_token(token, KEY, SECRET).can_publish_data is False


def test_expired_token_refused() -> None:
    token = mint_token(KEY, SECRET, "alice", "r1", ttl=-120)
    with pytest.raises(TokenError, match="expired"):
        verify_token(token, KEY, SECRET)


def test_leeway_accepts_recently_expired() -> None:
    token = mint_token(KEY, SECRET, "alice", "r1", ttl=-30)
    assert verify_token(token, KEY, SECRET).identity == "alice"
    with pytest.raises(TokenError):
        verify_token(token, KEY, SECRET, leeway=0)


def test_wrong_secret_refused() -> None:
    token = mint_token(KEY, "another-secret", "alice", "r1")
    with pytest.raises(TokenError, match="signature"):
        verify_token(token, KEY, SECRET)


def test_wrong_key_refused() -> None:
    token = mint_token("otherkey", SECRET, "alice", "r1")
    with pytest.raises(TokenError, match="API key"):
        verify_token(token, KEY, SECRET)


def test_wrong_room_refused() -> None:
    token = mint_token(KEY, SECRET, "alice", "r1")
    with pytest.raises(TokenError, match="room"):
        verify_token(token, KEY, SECRET, expected_room="r2")
    assert verify_token(token, KEY, SECRET, expected_room="r1").room == "r1"


def _raw(claims: dict[str, object]) -> str:
    return jwt.encode(claims, SECRET, algorithm="HS256")


def _base() -> dict[str, object]:
    now = int(time.time())
    return {
        "iss": KEY,
        "sub": "alice",
        "nbf": now,
        "exp": now + 60,
        "video": {"roomJoin": True, "room": "r1"},
    }


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({"exp": None}, "exp"),
        ({"iss": None}, "iss"),
        ({"video": None}, "video"),
        ({"video": {"room": "r1"}}, "roomJoin"),
        ({"video": {"roomJoin": False, "room": "r1"}}, "roomJoin"),
        ({"video": {"roomJoin": True}}, "room"),
        ({"video": {"roomJoin": True, "room": ""}}, "room"),
        ({"sub": None}, "identity"),
        ({"attributes": {"a": 1}}, "attributes"),
        ({"nbf": int(time.time()) + 3600}, "invalid token"),
    ],
)
def test_incomplete_tokens_refused(change: dict[str, object], reason: str) -> None:
    claims = _base()
    for key, value in change.items():
        if value is None:
            claims.pop(key)
        else:
            claims[key] = value
    with pytest.raises(TokenError, match=reason):
        verify_token(_raw(claims), KEY, SECRET)


def test_other_algorithms_refused() -> None:
    token = jwt.encode(_base(), SECRET, algorithm="HS512")
    with pytest.raises(TokenError):
        verify_token(token, KEY, SECRET)
    unsigned = jwt.encode(_base(), None, algorithm="none")
    with pytest.raises(TokenError):
        verify_token(unsigned, KEY, SECRET)


def test_garbage_and_empty_refused() -> None:
    with pytest.raises(TokenError):
        verify_token("not.a.jwt", KEY, SECRET)
    with pytest.raises(TokenError, match="missing"):
        verify_token("", KEY, SECRET)


def test_mint_requires_identity_and_room() -> None:
    with pytest.raises(ValueError):
        mint_token(KEY, SECRET, "", "r1")
    with pytest.raises(ValueError):
        mint_token(KEY, SECRET, "alice", "")


def test_bearer_header_wins_over_query() -> None:
    assert bearer_token("Bearer abc", "q") == "abc"
    assert bearer_token("bearer  abc ", None) == "abc"
    assert bearer_token(None, "q") == "q"
    assert bearer_token("Basic xyz", "q") == "q"
    assert bearer_token("Bearer ", None) is None
    assert bearer_token(None, "") is None
