// A LiveKit participant reduced to its RPC and data-stream machinery, driven over JSON lines.
//
// livekit-client's own RpcClientManager, RpcServerManager, IncomingDataStreamManager and
// OutgoingDataStreamManager are instantiated and wired the way the SDK's Room wires them; the
// engine is a fake that serializes every outgoing DataPacket (stamping the reliable sequence
// number as the real engine does) and writes it to stdout. Incoming packets arrive on stdin,
// already stamped by the test's fake SFU, and are routed like Room routes them.
//
// stdin: one JSON command per line; stdout: one JSON event per line; stderr: logs.
// The protocol is documented in tests/interop/node/README.md.
import './stdio';

import { createHash } from 'node:crypto';
import { EventEmitter } from 'node:events';
import * as readline from 'node:readline';

import { type ClientInfo_Capability, DataPacket, type Encryption_Type } from '@livekit/protocol';

import { type BytesSpec, generateBytes, generateText, type TextSpec } from './generate';
import {
  type BaseStreamInfo,
  type ByteStreamReader,
  type ByteStreamWriter,
  DataChannelKind,
  DataStreamError,
  EngineEvent,
  IncomingDataStreamManager,
  OutgoingDataStreamManager,
  PublishDataError,
  RPC_REQUEST_DATA_STREAM_TOPIC,
  RPC_RESPONSE_DATA_STREAM_TOPIC,
  type RTCEngine,
  RpcClientManager,
  RpcError,
  type RpcInvocationData,
  RpcServerManager,
  type TextStreamReader,
  type TextStreamWriter,
  clientProtocol,
  isDeflateRawCompressionSupported,
  livekitClientVersion,
  logger,
} from './lk';

type Command = Record<string, any>;
type Event = Record<string, unknown>;

/** The real engine refuses data-channel messages above this size (PublishDataError). */
const MAX_DATA_MESSAGE_BYTES = 64_000;

let inlineLimit = 4096;

function emit(event: Event): void {
  process.stdout.write(`${JSON.stringify(event)}\n`);
}

function sha256(bytes: Uint8Array): string {
  return createHash('sha256').update(bytes).digest('hex');
}

function concatBytes(chunks: Uint8Array[]): Uint8Array {
  const total = chunks.reduce((n, c) => n + c.byteLength, 0);
  const out = new Uint8Array(total);
  let offset = 0;
  for (const c of chunks) {
    out.set(c, offset);
    offset += c.byteLength;
  }
  return out;
}

/** Length, digest and (when small) the content of a string, measured in UTF-8 bytes. */
function textSummary(text: string, prefix: string): Event {
  const bytes = Buffer.from(text, 'utf8');
  const out: Event = {
    [`${prefix}_len`]: bytes.byteLength,
    [`${prefix}_sha256`]: sha256(bytes),
  };
  if (bytes.byteLength <= inlineLimit) {
    out[prefix] = text;
  }
  return out;
}

function describeError(e: unknown): Event {
  if (e instanceof RpcError) {
    return { name: 'RpcError', code: e.code, message: e.message, data: e.data ?? null };
  }
  if (e instanceof DataStreamError) {
    return {
      name: e.name,
      code: e.code,
      message: e.message,
      reason: e.reason,
      reason_name: e.reasonName,
    };
  }
  if (e instanceof Error) {
    const code = (e as { code?: unknown }).code;
    return { name: e.name, code: typeof code === 'number' ? code : null, message: e.message };
  }
  return { name: typeof e, code: null, message: String(e) };
}

function infoJson(info: BaseStreamInfo & { name?: string; attachedStreamIds?: string[] }): Event {
  const out: Event = {
    id: info.id,
    topic: info.topic,
    mime_type: info.mimeType,
    timestamp: info.timestamp,
    size: info.size ?? null,
    attributes: info.attributes ?? null,
    encryption_type: info.encryptionType,
  };
  if ('name' in info) {
    out.name = info.name;
  }
  if ('attachedStreamIds' in info) {
    out.attached_stream_ids = info.attachedStreamIds ?? null;
  }
  return out;
}

/** `field` (literal), `field_repeat` ({text, count}) or `field_gen` (a TextSpec); else ''. */
function textField(cmd: Command, field: string): string {
  if (typeof cmd[field] === 'string') {
    return cmd[field];
  }
  if (cmd[`${field}_repeat`]) {
    const r = cmd[`${field}_repeat`];
    return generateText({ type: 'repeat', text: r.text, count: r.count });
  }
  if (cmd[`${field}_gen`]) {
    return generateText(cmd[`${field}_gen`] as TextSpec);
  }
  return '';
}

/** `field` (base64) or `field_gen` (a BytesSpec); else empty. */
function bytesField(cmd: Command, field: string): Uint8Array {
  if (typeof cmd[field] === 'string') {
    return new Uint8Array(Buffer.from(cmd[field], 'base64'));
  }
  if (cmd[`${field}_gen`]) {
    return generateBytes(cmd[`${field}_gen`] as BytesSpec);
  }
  return new Uint8Array(0);
}

/** A write in stream_text: a literal string or a TextSpec. */
function textWrite(w: string | TextSpec): string {
  return typeof w === 'string' ? w : generateText(w);
}

/** A write in stream_bytes: base64 or a BytesSpec. */
function bytesWrite(w: string | BytesSpec): Uint8Array {
  return typeof w === 'string' ? new Uint8Array(Buffer.from(w, 'base64')) : generateBytes(w);
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

function optionalString(v: unknown): string | undefined {
  return typeof v === 'string' ? v : undefined;
}

function optionalNumber(v: unknown): number | undefined {
  return typeof v === 'number' ? v : undefined;
}

function optionalBool(v: unknown): boolean | undefined {
  return typeof v === 'boolean' ? v : undefined;
}

function optionalList(v: unknown): string[] | undefined {
  return Array.isArray(v) ? (v as string[]) : undefined;
}

function optionalMap(v: unknown): Record<string, string> | undefined {
  return v && typeof v === 'object' && !Array.isArray(v) ? (v as Record<string, string>) : undefined;
}

/**
 * Stand-in for the SDK's RTCEngine as far as the managers use it: sendDataPacket, the
 * e2eeManager flag, the Closing event (streamText's writer listens to it) and serverVersion.
 */
class FakeEngine extends EventEmitter {
  e2eeManager = undefined;

  serverVersion: string | undefined = undefined;

  private nextSequence = 1;

  async sendDataPacket(packet: DataPacket, kind: DataChannelKind): Promise<void> {
    if (kind === DataChannelKind.RELIABLE) {
      packet.sequence = this.nextSequence;
      this.nextSequence += 1;
    }
    const bytes = packet.toBinary();
    if (bytes.byteLength > MAX_DATA_MESSAGE_BYTES) {
      throw new PublishDataError(
        `${bytes.byteLength}-byte data message is over the ${MAX_DATA_MESSAGE_BYTES}-byte limit`,
      );
    }
    emit({
      ev: 'packet',
      data: Buffer.from(bytes).toString('base64'),
      case: packet.value.case ?? null,
      sequence: packet.sequence,
    });
  }
}

type PeerInfo = { clientProtocol: number; capabilities: ClientInfo_Capability[] };

type Behavior = { kind: string; [key: string]: unknown };

const BEHAVIORS = new Set([
  'echo',
  'sleep_ms',
  'error',
  'throw',
  'throw_value',
  'length',
  'repeat',
  'return',
  'return_undefined',
  'never',
]);

function normalizeBehavior(raw: unknown): Behavior {
  const b: Behavior =
    typeof raw === 'string' ? { kind: raw } : { kind: 'echo', ...(raw as Record<string, unknown>) };
  if (!BEHAVIORS.has(b.kind)) {
    throw new Error(`unknown behavior ${JSON.stringify(raw)}`);
  }
  return b;
}

async function runBehavior(b: Behavior, data: RpcInvocationData): Promise<string> {
  if (typeof b.delay_ms === 'number') {
    await sleep(b.delay_ms);
  }
  switch (b.kind) {
    case 'echo':
      return data.payload;
    case 'sleep_ms':
      await sleep(Number(b.ms ?? 0));
      return data.payload;
    case 'error':
      throw new RpcError(
        Number(b.code),
        String(b.message ?? ''),
        typeof b.data === 'string' ? b.data : undefined,
      );
    case 'throw':
      throw new Error(String(b.message ?? 'handler failed'));
    case 'throw_value':
      throw b.value;
    case 'length':
      return String(Buffer.byteLength(data.payload, 'utf8'));
    case 'repeat':
      return String(b.text ?? 'x').repeat(Number(b.count ?? 0));
    case 'return':
      return textField(b, 'value');
    case 'return_undefined':
      return undefined as unknown as string;
    case 'never':
      return new Promise<string>(() => {});
    default:
      throw new Error(`unknown behavior ${b.kind}`);
  }
}

type OpenWriter = {
  kind: 'text' | 'byte';
  /** Serializes writes and closes issued by separate commands. */
  chain: Promise<TextStreamWriter | ByteStreamWriter>;
};

class Peer {
  identity = '';

  private peers = new Map<string, PeerInfo>();

  private engine = new FakeEngine();

  private incoming?: IncomingDataStreamManager;

  private outgoing?: OutgoingDataStreamManager;

  private rpcClient?: RpcClientManager;

  private rpcServer?: RpcServerManager;

  private writers = new Map<string, OpenWriter>();

  /** Last reliable sequence seen per sender sid, as the engine keeps it. */
  private reliableReceived = new Map<string, number>();

  private clientProtocolOf = (identity: string): number =>
    this.peers.get(identity)?.clientProtocol ?? 0;

  private capabilitiesOf = (identity: string): ClientInfo_Capability[] =>
    this.peers.get(identity)?.capabilities ?? [];

  private remoteIdentities = (): string[] => Array.from(this.peers.keys());

  private ready(): {
    incoming: IncomingDataStreamManager;
    outgoing: OutgoingDataStreamManager;
    rpcClient: RpcClientManager;
    rpcServer: RpcServerManager;
  } {
    if (!this.incoming || !this.outgoing || !this.rpcClient || !this.rpcServer) {
      throw new Error('setup has not been called');
    }
    return {
      incoming: this.incoming,
      outgoing: this.outgoing,
      rpcClient: this.rpcClient,
      rpcServer: this.rpcServer,
    };
  }

  private setPeer(identity: string, spec: Command): void {
    this.peers.set(identity, {
      clientProtocol: Number(spec.client_protocol ?? 0),
      capabilities: (spec.capabilities ?? []) as ClientInfo_Capability[],
    });
  }

  private report(where: string): (e: unknown) => void {
    return (e) => emit({ ev: 'unhandled_error', where, error: describeError(e) });
  }

  // ---- commands ---------------------------------------------------------------------------

  setup(cmd: Command): void {
    if (this.incoming) {
      throw new Error('setup was already called');
    }
    this.identity = String(cmd.identity ?? '');
    for (const [identity, spec] of Object.entries((cmd.peers ?? {}) as Record<string, Command>)) {
      this.setPeer(identity, spec);
    }
    this.engine.serverVersion = optionalString(cmd.server_version);
    if (typeof cmd.inline_limit === 'number') {
      inlineLimit = cmd.inline_limit;
    }

    // Same construction and wiring as the SDK's Room.
    const engine = this.engine as unknown as RTCEngine;
    this.incoming = new IncomingDataStreamManager(optionalNumber(cmd.max_payload_bytes));
    this.outgoing = new OutgoingDataStreamManager(
      engine,
      logger,
      this.clientProtocolOf,
      this.capabilitiesOf,
      this.remoteIdentities,
    );
    const rpcClient = new RpcClientManager(
      logger,
      this.outgoing,
      this.clientProtocolOf,
      () => this.engine.serverVersion,
    );
    const rpcServer = new RpcServerManager(logger, this.outgoing, this.clientProtocolOf);
    this.rpcClient = rpcClient;
    this.rpcServer = rpcServer;
    // Room hands these to the engine without awaiting; a failure would go unnoticed there.
    rpcClient.on('sendDataPacket', ({ packet }) => {
      this.engine
        .sendDataPacket(packet, DataChannelKind.RELIABLE)
        .catch(this.report('rpc client send'));
    });
    rpcServer.on('sendDataPacket', ({ packet }) => {
      this.engine
        .sendDataPacket(packet, DataChannelKind.RELIABLE)
        .catch(this.report('rpc server send'));
    });
    this.incoming.registerTextStreamHandler(RPC_REQUEST_DATA_STREAM_TOPIC, (reader, { identity }) => {
      rpcServer
        .handleIncomingDataStream(reader, identity, reader.info.attributes ?? {})
        .catch(this.report('rpc request stream'));
    });
    this.incoming.registerTextStreamHandler(RPC_RESPONSE_DATA_STREAM_TOPIC, (reader, { identity }) => {
      rpcClient
        .handleIncomingDataStream(reader, identity, reader.info.attributes ?? {})
        .catch(this.report('rpc response stream'));
    });
    // Room marks the manager connected once the room reaches Connected.
    this.incoming.setConnected(cmd.connected ?? true);
  }

  add_peer(cmd: Command): void {
    this.setPeer(String(cmd.identity), cmd);
  }

  participant_disconnected(cmd: Command): void {
    const { incoming, rpcClient } = this.ready();
    const identity = String(cmd.identity);
    // As Room.handleParticipantDisconnected: forget the participant; only a known participant
    // has its incoming streams aborted and, last, its pending RPCs rejected.
    if (!this.peers.delete(identity)) {
      return;
    }
    incoming.validateParticipantHasNoActiveDataStreams(identity);
    rpcClient.handleParticipantDisconnected(identity);
  }

  set_connected(cmd: Command): void {
    this.ready().incoming.setConnected(Boolean(cmd.connected));
  }

  room_disconnected(): void {
    const { incoming } = this.ready();
    incoming.clearControllers();
    incoming.setConnected(false);
  }

  packet(cmd: Command): void {
    const { incoming, rpcClient, rpcServer } = this.ready();
    const packet = DataPacket.fromBinary(new Uint8Array(Buffer.from(String(cmd.data), 'base64')));
    const encryptionType = Number(cmd.encryption_type ?? 0) as Encryption_Type;
    const kind = packet.value.case ?? null;

    // Engine: drop reliable duplicates per sender sid.
    if (packet.sequence > 0 && packet.participantSid !== '') {
      const last = this.reliableReceived.get(packet.participantSid);
      if (last && packet.sequence <= last) {
        emit({ ev: 'packet_dropped', reason: 'duplicate_sequence', case: kind });
        return;
      }
      this.reliableReceived.set(packet.participantSid, packet.sequence);
    }
    if (kind === 'encryptedPacket') {
      // The engine drops these when E2EE is not set up, which is the case here.
      emit({ ev: 'packet_dropped', reason: 'encrypted_without_e2ee', case: kind });
      return;
    }

    // Room's dispatch, for the RPC and data-stream cases.
    try {
      switch (packet.value.case) {
        case 'streamHeader':
        case 'streamChunk':
        case 'streamTrailer':
          incoming.handleDataStreamPacket(packet, encryptionType);
          break;
        case 'rpcRequest':
          rpcServer
            .handleIncomingRpcRequest(packet.participantIdentity, packet.value.value)
            .catch(this.report('rpc request'));
          break;
        case 'rpcResponse': {
          const response = packet.value.value;
          if (response.value.case === 'payload') {
            rpcClient.handleIncomingRpcResponseSuccess(response.requestId, response.value.value);
          } else if (response.value.case === 'error') {
            rpcClient.handleIncomingRpcResponseFailure(
              response.requestId,
              RpcError.fromProto(response.value.value),
            );
          } else {
            emit({ ev: 'packet_dropped', reason: 'unknown_rpc_response_case', case: kind });
          }
          break;
        }
        case 'rpcAck':
          rpcClient.handleIncomingRpcAck(packet.value.value.requestId);
          break;
        default:
          emit({ ev: 'packet_dropped', reason: 'not_rpc_or_stream', case: kind });
      }
    } catch (e) {
      emit({ ev: 'dispatch_error', case: kind, error: describeError(e) });
    }
  }

  register_rpc(cmd: Command): void {
    const { rpcServer } = this.ready();
    const method = String(cmd.method);
    const behavior = normalizeBehavior(cmd.behavior ?? 'echo');
    rpcServer.registerRpcMethod(method, async (data) => {
      emit({
        ev: 'rpc_invoked',
        method,
        request_id: data.requestId,
        caller_identity: data.callerIdentity,
        response_timeout_ms: data.responseTimeout,
        ...textSummary(data.payload, 'payload'),
      });
      try {
        const result = await runBehavior(behavior, data);
        emit({
          ev: 'rpc_handled',
          method,
          request_id: data.requestId,
          ok: true,
          ...textSummary(result ?? '', 'response'),
        });
        return result;
      } catch (e) {
        emit({ ev: 'rpc_handled', method, request_id: data.requestId, ok: false, error: describeError(e) });
        throw e;
      }
    });
  }

  unregister_rpc(cmd: Command): void {
    this.ready().rpcServer.unregisterRpcMethod(String(cmd.method));
  }

  perform_rpc(cmd: Command): void {
    const { rpcClient } = this.ready();
    const call = String(cmd.call);
    const started = performance.now();
    const elapsed = () => Math.round((performance.now() - started) * 1000) / 1000;
    let requestId: string | null = null;
    rpcClient
      .performRpc({
        destinationIdentity: String(cmd.destination),
        method: String(cmd.method),
        payload: textField(cmd, 'payload'),
        responseTimeout: optionalNumber(cmd.response_timeout_ms),
      })
      .then(([id, completion]) => {
        requestId = id;
        emit({ ev: 'rpc_sent', call, request_id: id, elapsed_ms: elapsed() });
        return completion;
      })
      .then(
        (result) => {
          emit({
            ev: 'rpc_result',
            call,
            ok: true,
            request_id: requestId,
            elapsed_ms: elapsed(),
            ...textSummary(result, 'payload'),
          });
        },
        (e: unknown) => {
          const err = describeError(e);
          emit({
            ev: 'rpc_result',
            call,
            ok: false,
            request_id: requestId,
            elapsed_ms: elapsed(),
            code: err.code,
            message: err.message,
            data: err.data ?? null,
            error_name: err.name,
            error: err,
          });
        },
      );
  }

  private registerStreamHandler(kind: 'text' | 'byte', cmd: Command): void {
    const { incoming } = this.ready();
    const topic = String(cmd.topic ?? '');
    const mode = String(cmd.mode ?? 'read_all');
    if (!['read_all', 'iterate', 'none'].includes(mode)) {
      throw new Error(`unknown stream read mode ${mode}`);
    }
    const delayMs = optionalNumber(cmd.delay_read_ms);
    const onStream = (reader: TextStreamReader | ByteStreamReader, sender: string) => {
      emit({ ev: 'stream_opened', kind, topic, sender, info: infoJson(reader.info) });
      if (mode === 'none') {
        return;
      }
      const base: Event = { ev: 'stream_received', kind, topic, sender };
      (async () => {
        if (delayMs !== undefined) {
          await sleep(delayMs);
        }
        let bytes: Uint8Array;
        let chunks: number[];
        try {
          if (kind === 'text') {
            const textReader = reader as TextStreamReader;
            let text = '';
            chunks = [];
            if (mode === 'iterate') {
              for await (const delta of textReader) {
                chunks.push(Buffer.byteLength(delta, 'utf8'));
                text += delta;
              }
            } else {
              text = await textReader.readAll();
            }
            bytes = Buffer.from(text, 'utf8');
          } else {
            const byteReader = reader as ByteStreamReader;
            let parts: Uint8Array[] = [];
            if (mode === 'iterate') {
              for await (const part of byteReader) {
                parts.push(part);
              }
            } else {
              parts = await byteReader.readAll();
            }
            chunks = parts.map((p) => p.byteLength);
            bytes = concatBytes(parts);
          }
        } catch (e) {
          emit({ ...base, info: infoJson(reader.info), ok: false, error: describeError(e) });
          return;
        }
        const event: Event = {
          ...base,
          info: infoJson(reader.info),
          ok: true,
          length: bytes.byteLength,
          sha256: sha256(bytes),
          chunks,
        };
        if (bytes.byteLength <= inlineLimit) {
          if (kind === 'text') {
            event.content = Buffer.from(bytes).toString('utf8');
          } else {
            event.content_b64 = Buffer.from(bytes).toString('base64');
          }
        }
        emit(event);
      })().catch(this.report('stream handler'));
    };
    if (kind === 'text') {
      incoming.registerTextStreamHandler(topic, (reader, { identity }) => onStream(reader, identity));
    } else {
      incoming.registerByteStreamHandler(topic, (reader, { identity }) => onStream(reader, identity));
    }
  }

  register_text_stream_handler(cmd: Command): void {
    this.registerStreamHandler('text', cmd);
  }

  register_byte_stream_handler(cmd: Command): void {
    this.registerStreamHandler('byte', cmd);
  }

  unregister_text_stream_handler(cmd: Command): void {
    this.ready().incoming.unregisterTextStreamHandler(String(cmd.topic ?? ''));
  }

  unregister_byte_stream_handler(cmd: Command): void {
    this.ready().incoming.unregisterByteStreamHandler(String(cmd.topic ?? ''));
  }

  /** Runs an outgoing send and reports it as send_done. */
  private track(call: string, work: () => Promise<Event>): void {
    const started = performance.now();
    const elapsed = () => Math.round((performance.now() - started) * 1000) / 1000;
    work().then(
      (result) => emit({ ev: 'send_done', call, ok: true, elapsed_ms: elapsed(), ...result }),
      (e: unknown) =>
        emit({ ev: 'send_done', call, ok: false, elapsed_ms: elapsed(), error: describeError(e) }),
    );
  }

  private progressSink(cmd: Command): { progress?: number[]; onProgress?: (p: number) => void } {
    if (!cmd.report_progress) {
      return {};
    }
    const progress: number[] = [];
    return { progress, onProgress: (p: number) => progress.push(p) };
  }

  private fileFrom(spec: Command): File {
    return new File([bytesField(spec, 'data')], String(spec.name ?? 'file'), {
      type: optionalString(spec.mime_type) ?? '',
    });
  }

  send_text(cmd: Command): void {
    const { outgoing } = this.ready();
    const text = textField(cmd, 'text');
    const attachments = Array.isArray(cmd.attachments)
      ? (cmd.attachments as Command[]).map((a) => this.fileFrom(a))
      : undefined;
    const sink = this.progressSink(cmd);
    this.track(String(cmd.call), async () => {
      const info = await outgoing.sendText(text, {
        topic: optionalString(cmd.topic),
        destinationIdentities: optionalList(cmd.destination_identities),
        attributes: optionalMap(cmd.attributes),
        compress: optionalBool(cmd.compress),
        attachments,
        onProgress: sink.onProgress,
      });
      return { info: infoJson(info), progress: sink.progress };
    });
  }

  send_bytes(cmd: Command): void {
    const { outgoing } = this.ready();
    const data = bytesField(cmd, 'data');
    const sink = this.progressSink(cmd);
    this.track(String(cmd.call), async () => {
      const info = await outgoing.sendBytes(data, {
        topic: optionalString(cmd.topic),
        destinationIdentities: optionalList(cmd.destination_identities),
        attributes: optionalMap(cmd.attributes),
        compress: optionalBool(cmd.compress),
        name: optionalString(cmd.name),
        mimeType: optionalString(cmd.mime_type),
        onProgress: sink.onProgress,
      });
      return { info: infoJson(info), progress: sink.progress };
    });
  }

  send_file(cmd: Command): void {
    const { outgoing } = this.ready();
    const file = this.fileFrom(cmd.file ?? {});
    const sink = this.progressSink(cmd);
    this.track(String(cmd.call), async () => {
      const { id } = await outgoing.sendFile(file, {
        topic: optionalString(cmd.topic),
        destinationIdentities: optionalList(cmd.destination_identities),
        mimeType: optionalString(cmd.mime_type),
        compress: optionalBool(cmd.compress),
        onProgress: sink.onProgress,
      });
      return { id, progress: sink.progress };
    });
  }

  private writeAndMaybeClose(
    call: string,
    name: string,
    writer: OpenWriter,
    writes: unknown[],
    close: boolean,
  ): void {
    const step = writer.chain.then(async (w) => {
      for (const item of writes) {
        if (writer.kind === 'text') {
          await (w as TextStreamWriter).write(textWrite(item as string | TextSpec));
        } else {
          await (w as ByteStreamWriter).write(bytesWrite(item as string | BytesSpec));
        }
      }
      if (close) {
        await w.close();
        this.writers.delete(name);
      }
      return w;
    });
    writer.chain = step;
    this.track(call, async () => {
      const w = await step;
      return { info: infoJson(w.info), closed: close };
    });
  }

  private openWriter(
    kind: 'text' | 'byte',
    cmd: Command,
    open: () => Promise<TextStreamWriter | ByteStreamWriter>,
  ): void {
    const call = String(cmd.call);
    if (this.writers.has(call)) {
      throw new Error(`a writer named ${call} is already open`);
    }
    const writer: OpenWriter = {
      kind,
      chain: open().then((w) => {
        emit({ ev: 'stream_writer_opened', call, info: infoJson(w.info) });
        return w;
      }),
    };
    this.writers.set(call, writer);
    const close = cmd.close ?? true;
    // A writer that failed to open is forgotten; the error is reported through send_done.
    writer.chain.catch(() => this.writers.delete(call));
    this.writeAndMaybeClose(call, call, writer, (cmd.writes ?? []) as unknown[], Boolean(close));
  }

  stream_text(cmd: Command): void {
    const { outgoing } = this.ready();
    const type = optionalString(cmd.type) as 'create' | 'update' | undefined;
    this.openWriter('text', cmd, () =>
      outgoing.streamText({
        topic: optionalString(cmd.topic),
        destinationIdentities: optionalList(cmd.destination_identities),
        attributes: optionalMap(cmd.attributes),
        streamId: optionalString(cmd.stream_id),
        totalSize: optionalNumber(cmd.total_size),
        type,
        version: optionalNumber(cmd.version),
        replyToStreamId: optionalString(cmd.reply_to_stream_id),
        attachedStreamIds: optionalList(cmd.attached_stream_ids),
      }),
    );
  }

  stream_bytes(cmd: Command): void {
    const { outgoing } = this.ready();
    this.openWriter('byte', cmd, () =>
      outgoing.streamBytes({
        topic: optionalString(cmd.topic),
        destinationIdentities: optionalList(cmd.destination_identities),
        attributes: optionalMap(cmd.attributes),
        streamId: optionalString(cmd.stream_id),
        totalSize: optionalNumber(cmd.total_size),
        name: optionalString(cmd.name),
        mimeType: optionalString(cmd.mime_type),
      }),
    );
  }

  stream_write(cmd: Command): void {
    const name = String(cmd.writer);
    const writer = this.writers.get(name);
    if (!writer) {
      throw new Error(`no open writer named ${name}`);
    }
    this.writeAndMaybeClose(
      String(cmd.call ?? name),
      name,
      writer,
      (cmd.writes ?? []) as unknown[],
      Boolean(cmd.close ?? false),
    );
  }

  engine_closing(): void {
    // The SDK's engine emits 'closing' when it shuts down; open streamText writers close on it.
    this.engine.emit(EngineEvent.Closing);
  }
}

const COMMANDS = new Set([
  'setup',
  'add_peer',
  'participant_disconnected',
  'set_connected',
  'room_disconnected',
  'packet',
  'register_rpc',
  'unregister_rpc',
  'perform_rpc',
  'register_text_stream_handler',
  'register_byte_stream_handler',
  'unregister_text_stream_handler',
  'unregister_byte_stream_handler',
  'send_text',
  'send_bytes',
  'send_file',
  'stream_text',
  'stream_bytes',
  'stream_write',
  'engine_closing',
]);

function main(): void {
  const level = process.env.LK_PEER_LOG_LEVEL;
  if (level) {
    logger.setLevel(level as Parameters<typeof logger.setLevel>[0]);
  }
  process.on('unhandledRejection', (reason) => {
    emit({ ev: 'unhandled_error', where: 'unhandledRejection', error: describeError(reason) });
  });
  process.on('uncaughtException', (error) => {
    emit({ ev: 'unhandled_error', where: 'uncaughtException', error: describeError(error) });
  });

  const peer = new Peer();
  const exit = (code: number) => process.stdout.write('', () => process.exit(code));
  const lines = readline.createInterface({ input: process.stdin, crlfDelay: Infinity });
  lines.on('line', (line) => {
    if (line.trim() === '') {
      return;
    }
    let cmd: Command;
    try {
      cmd = JSON.parse(line) as Command;
    } catch (e) {
      emit({ ev: 'protocol_error', message: `invalid JSON: ${String(e)}` });
      return;
    }
    const op = String(cmd.op);
    const reply = (result: Event) => {
      if (cmd.cmd !== undefined) {
        emit({ ev: 'done', cmd: cmd.cmd, op, ...result });
      } else if (result.ok === false) {
        emit({ ev: 'protocol_error', op, error: result.error });
      }
    };
    if (op === 'shutdown') {
      reply({ ok: true });
      lines.close();
      return;
    }
    if (!COMMANDS.has(op)) {
      reply({ ok: false, error: { name: 'Error', message: `unknown op ${op}` } });
      return;
    }
    try {
      (peer as unknown as Record<string, (c: Command) => void>)[op](cmd);
      reply({ ok: true });
    } catch (e) {
      reply({ ok: false, error: describeError(e) });
    }
  });
  lines.on('close', () => exit(0));

  emit({
    ev: 'ready',
    pid: process.pid,
    node: process.version,
    livekit_client: livekitClientVersion,
    client_protocol: clientProtocol,
    deflate_raw: isDeflateRawCompressionSupported(),
  });
}

main();
