// Single place where the peer reaches into livekit-client's shipped TypeScript sources.
// The package's "exports" map only exposes the built bundle, whose RPC and data-stream
// managers are internal, so the sources under node_modules/livekit-client/src are imported
// by relative path and bundled by esbuild. Nothing here is copied: every symbol is the
// package's own.
export { default as logger } from '../node_modules/livekit-client/src/logger';
export { clientProtocol, version as livekitClientVersion } from '../node_modules/livekit-client/src/version';
export { DataChannelKind } from '../node_modules/livekit-client/src/room/data-channel/types';
export { DataStreamError, PublishDataError } from '../node_modules/livekit-client/src/room/errors';
export { EngineEvent } from '../node_modules/livekit-client/src/room/events';
export { isDeflateRawCompressionSupported } from '../node_modules/livekit-client/src/room/utils';
export {
  RPC_REQUEST_DATA_STREAM_TOPIC,
  RPC_RESPONSE_DATA_STREAM_TOPIC,
  RpcClientManager,
  RpcError,
  RpcServerManager,
  type RpcInvocationData,
} from '../node_modules/livekit-client/src/room/rpc';
export { default as IncomingDataStreamManager } from '../node_modules/livekit-client/src/room/data-stream/incoming/IncomingDataStreamManager';
export type {
  ByteStreamReader,
  TextStreamReader,
} from '../node_modules/livekit-client/src/room/data-stream/incoming/StreamReader';
export { default as OutgoingDataStreamManager } from '../node_modules/livekit-client/src/room/data-stream/outgoing/OutgoingDataStreamManager';
export type {
  ByteStreamWriter,
  TextStreamWriter,
} from '../node_modules/livekit-client/src/room/data-stream/outgoing/StreamWriter';
export type {
  BaseStreamInfo,
  ByteStreamInfo,
  TextStreamInfo,
} from '../node_modules/livekit-client/src/room/types';
export type { default as RTCEngine } from '../node_modules/livekit-client/src/room/RTCEngine';
