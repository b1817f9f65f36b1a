// A yamux session (hashicorp/yamux spec) over any Duplex byte stream. Each stream is a Node
// Duplex whose receive window is only re-opened as its reader consumes, and whose writer waits
// for the peer's window, so neither side buffers more than a window per stream.
import { EventEmitter } from 'node:events';
import { Duplex } from 'node:stream';
import {
  Flag,
  FrameParser,
  FrameType,
  GoAwayCode,
  YamuxProtocolError,
  encodeFrame,
  type Frame,
} from './yamux-frame.js';

/** The window every stream starts with, on both sides, as the spec fixes it. */
export const INITIAL_STREAM_WINDOW = 256 * 1024;

export type YamuxRole = 'client' | 'server';

export interface YamuxSessionOptions {
  /** client opens odd stream ids, server even ones. */
  role: YamuxRole;
  /** The first stream id this side opens (default 1 for a client, 2 for a server). */
  firstStreamId?: number;
  /** Largest data frame we send; smaller frames interleave streams more fairly. */
  maxFrameSize?: number;
  /** Send a ping this often and close the session if none is answered; 0 = off (default). */
  keepAliveIntervalMs?: number;
  /** How long a keepalive ping may go unanswered; defaults to the interval. */
  keepAliveTimeoutMs?: number;
  /** Called for every stream the peer opens (also emitted as 'stream'). */
  onStream?: (stream: YamuxStream) => void;
}

export class YamuxSessionClosedError extends Error {
  constructor(reason: string) {
    super(`yamux session closed: ${reason}`);
    this.name = 'YamuxSessionClosedError';
  }
}

export class YamuxStreamResetError extends Error {
  constructor(readonly streamId: number) {
    super(`yamux stream ${streamId} reset by peer`);
    this.name = 'YamuxStreamResetError';
  }
}

type Waiter = { resolve: () => void; reject: (err: Error) => void };

export class YamuxStream extends Duplex {
  /** Bytes we may still send before the peer grants more. */
  private sendWindow = INITIAL_STREAM_WINDOW;
  /** Bytes the peer may still send before we grant more. */
  private recvWindow = INITIAL_STREAM_WINDOW;
  /** Bytes consumed by our reader and not yet granted back to the peer. */
  private recvCredit = 0;
  private readonly recvQueue: Buffer[] = [];
  private wantsRead = false;
  private windowWaiter: Waiter | undefined;
  private localFin = false;
  private remoteFin = false;
  private reset_ = false;
  private pushedEof = false;

  /** @internal streams are made by YamuxSession.open() or arrive via 'stream'. */
  constructor(
    readonly id: number,
    private readonly session: YamuxSession,
  ) {
    super({ allowHalfOpen: true });
  }

  /** The peer's current window for this stream (what we may send now). */
  get peerWindow(): number {
    return this.sendWindow;
  }

  /** Bytes received and queued but not yet handed to the reader. */
  get queuedBytes(): number {
    let n = 0;
    for (const b of this.recvQueue) n += b.length;
    return n;
  }

  /** Abort the stream both ways, telling the peer with RST. */
  reset(): void {
    if (!this.reset_ && !(this.localFin && this.remoteFin)) {
      this.reset_ = true;
      this.session._sendFlags(this.id, Flag.RST);
    }
    this.destroy();
  }

  override _write(
    chunk: Buffer,
    _encoding: BufferEncoding,
    callback: (error?: Error | null) => void,
  ): void {
    this.writeAll(chunk).then(() => callback(), callback);
  }

  private async writeAll(chunk: Buffer): Promise<void> {
    let off = 0;
    while (off < chunk.length) {
      while (this.sendWindow === 0) {
        await new Promise<void>((resolve, reject) => {
          this.windowWaiter = { resolve, reject };
        });
      }
      if (this.reset_) throw new Error(`yamux stream ${this.id} was reset`);
      const n = Math.min(this.sendWindow, chunk.length - off, this.session._maxFrameSize);
      this.sendWindow -= n;
      await this.session._sendData(this.id, 0, chunk.subarray(off, off + n));
      off += n;
    }
  }

  override _final(callback: (error?: Error | null) => void): void {
    this.localFin = true;
    this.session._sendData(this.id, Flag.FIN, undefined).then(() => {
      this.maybeForget();
      callback();
    }, callback);
  }

  override _read(): void {
    this.wantsRead = true;
    this.deliver();
  }

  override _destroy(err: Error | null, callback: (error?: Error | null) => void): void {
    if (!this.reset_ && !(this.localFin && this.remoteFin) && !this.session.closed) {
      this.reset_ = true;
      this.session._sendFlags(this.id, Flag.RST);
    }
    this.failWriter(err ?? new Error(`yamux stream ${this.id} destroyed`));
    this.session._forget(this.id);
    callback(err);
  }

  /** @internal */
  _onFrame(frame: Frame): void {
    const { type, flags, length } = frame.header;
    if (type === FrameType.WindowUpdate && length > 0) {
      this.sendWindow += length;
      this.wakeWriter();
    }
    if (type === FrameType.Data && length > 0) {
      if (length > this.recvWindow) {
        throw new YamuxProtocolError(
          `stream ${this.id} received ${length} bytes with only ${this.recvWindow} window left`,
        );
      }
      this.recvWindow -= length;
      if (!this.remoteFin && !this.destroyed) this.recvQueue.push(frame.payload);
    }
    if (flags & Flag.RST) {
      this.reset_ = true;
      this.destroy(new YamuxStreamResetError(this.id));
      return;
    }
    if (flags & Flag.FIN && !this.remoteFin) {
      this.remoteFin = true;
      this.maybeForget();
    }
    this.deliver();
  }

  /** @internal the session died under us. */
  _sessionClosed(err: Error): void {
    this.reset_ = true;
    this.destroy(err);
  }

  private deliver(): void {
    if (this.destroyed) return;
    while (this.wantsRead && this.recvQueue.length > 0) {
      const chunk = this.recvQueue.shift()!;
      this.recvCredit += chunk.length;
      this.wantsRead = this.push(chunk);
    }
    // Granting in halves (as hashicorp does) avoids an update per small read.
    if (this.recvCredit >= INITIAL_STREAM_WINDOW / 2 && !this.remoteFin) {
      const delta = this.recvCredit;
      this.recvCredit = 0;
      this.recvWindow += delta;
      this.session._sendWindowUpdate(this.id, 0, delta);
    }
    if (this.remoteFin && this.recvQueue.length === 0 && !this.pushedEof) {
      this.pushedEof = true;
      this.push(null);
    }
  }

  private maybeForget(): void {
    if (this.localFin && this.remoteFin) this.session._forget(this.id);
  }

  private wakeWriter(): void {
    const w = this.windowWaiter;
    this.windowWaiter = undefined;
    w?.resolve();
  }

  private failWriter(err: Error): void {
    const w = this.windowWaiter;
    this.windowWaiter = undefined;
    w?.reject(err);
  }
}

export class YamuxSession extends EventEmitter<{
  stream: [YamuxStream];
  close: [Error | undefined];
}> {
  private readonly streams = new Map<number, YamuxStream>();
  private readonly parser = new FrameParser();
  private nextId: number;
  private closed_ = false;
  private remoteGoAway = false;
  private localGoAway = false;
  private drainWaiters: Waiter[] = [];
  private readonly pings = new Map<number, { start: number; waiter: Waiter }>();
  private nextPingId = 1;
  private keepAliveTimer: NodeJS.Timeout | undefined;
  /** @internal */
  readonly _maxFrameSize: number;

  constructor(
    private readonly conn: Duplex,
    readonly options: YamuxSessionOptions,
  ) {
    super();
    const parity = options.role === 'client' ? 1 : 0;
    this.nextId = options.firstStreamId ?? 2 - parity;
    if (this.nextId < 1 || this.nextId % 2 !== parity) {
      throw new RangeError(`yamux ${options.role} cannot open stream ${this.nextId}`);
    }
    this._maxFrameSize = options.maxFrameSize ?? 64 * 1024;
    if (options.onStream) this.on('stream', options.onStream);
    conn.on('data', (chunk: Buffer) => this.onData(chunk));
    conn.on('end', () => this.destroy(new Error('underlying connection ended')));
    conn.on('error', (err: Error) => this.destroy(err));
    conn.on('close', () => this.destroy(new Error('underlying connection closed')));
    conn.on('drain', () => this.releaseDrainWaiters());
    const interval = options.keepAliveIntervalMs ?? 0;
    if (interval > 0) this.startKeepAlive(interval, options.keepAliveTimeoutMs ?? interval);
  }

  get closed(): boolean {
    return this.closed_;
  }

  /** Streams currently open (not fully closed, reset or destroyed). */
  get streamCount(): number {
    return this.streams.size;
  }

  /** Opens a stream to the peer; data may be written at once (before the peer's ACK). */
  open(): YamuxStream {
    if (this.closed_) throw new YamuxSessionClosedError('cannot open a stream');
    if (this.remoteGoAway) throw new Error('yamux: peer sent go-away, no new streams');
    if (this.localGoAway) throw new Error('yamux: session is going away, no new streams');
    const id = this.nextId;
    if (id > 0xffff_ffff) throw new Error('yamux: stream ids exhausted');
    this.nextId += 2;
    const stream = new YamuxStream(id, this);
    this.streams.set(id, stream);
    this._sendWindowUpdate(id, Flag.SYN, 0);
    return stream;
  }

  /** Round-trip time of one ping, in milliseconds. */
  ping(): Promise<number> {
    if (this.closed_) return Promise.reject(new YamuxSessionClosedError('cannot ping'));
    const id = this.nextPingId;
    this.nextPingId = (this.nextPingId % 0xffff_ffff) + 1;
    return new Promise<number>((resolve, reject) => {
      const start = performance.now();
      this.pings.set(id, {
        start,
        waiter: { resolve: () => resolve(performance.now() - start), reject },
      });
      this.writeFrame(
        encodeFrame({ type: FrameType.Ping, flags: Flag.SYN, streamId: 0, length: id }),
      );
    });
  }

  /** Tells the peer we accept no more streams; existing ones carry on. */
  goAway(code: number = GoAwayCode.Normal): void {
    if (this.closed_ || this.localGoAway) return;
    this.localGoAway = true;
    this.writeFrame(encodeFrame({ type: FrameType.GoAway, flags: 0, streamId: 0, length: code }));
  }

  /** Sends go-away, ends every stream with an error and ends the underlying stream. */
  close(): void {
    if (this.closed_) return;
    this.goAway(GoAwayCode.Normal);
    this.shutdown(new YamuxSessionClosedError('closed locally'), undefined);
    this.conn.end();
  }

  /** Errors every stream and destroys the underlying stream. */
  destroy(err?: Error): void {
    if (this.closed_) return;
    const reason =
      err instanceof YamuxSessionClosedError
        ? err
        : new YamuxSessionClosedError(err ? err.message : 'destroyed');
    this.shutdown(reason, err);
    this.conn.destroy();
  }

  private shutdown(streamErr: Error, emitted: Error | undefined): void {
    this.closed_ = true;
    if (this.keepAliveTimer) clearInterval(this.keepAliveTimer);
    for (const s of [...this.streams.values()]) s._sessionClosed(streamErr);
    this.streams.clear();
    for (const p of this.pings.values()) p.waiter.reject(streamErr);
    this.pings.clear();
    this.releaseDrainWaiters();
    this.emit('close', emitted);
  }

  private onData(chunk: Buffer): void {
    if (this.closed_) return;
    try {
      for (const frame of this.parser.push(chunk)) {
        this.onFrame(frame);
        if (this.closed_) return;
      }
    } catch (err) {
      if (err instanceof YamuxProtocolError) this.goAway(GoAwayCode.ProtocolError);
      this.destroy(err as Error);
    }
  }

  private onFrame(frame: Frame): void {
    const { type, flags, streamId, length } = frame.header;
    if (type === FrameType.Ping) {
      if (flags & Flag.SYN) {
        this.writeFrame(
          encodeFrame({ type: FrameType.Ping, flags: Flag.ACK, streamId: 0, length }),
        );
      } else if (flags & Flag.ACK) {
        const p = this.pings.get(length);
        this.pings.delete(length);
        p?.waiter.resolve();
      }
      return;
    }
    if (type === FrameType.GoAway) {
      this.remoteGoAway = true;
      if (length !== GoAwayCode.Normal) {
        this.destroy(new Error(`peer sent go-away with error code ${length}`));
      }
      return;
    }
    let stream = this.streams.get(streamId);
    if (flags & Flag.SYN) {
      if (stream) throw new YamuxProtocolError(`SYN for stream ${streamId} already open`);
      const peerParity = this.options.role === 'client' ? 0 : 1;
      if (streamId === 0 || streamId % 2 !== peerParity) {
        throw new YamuxProtocolError(`peer opened stream ${streamId} with our parity`);
      }
      if (this.localGoAway) {
        this._sendFlags(streamId, Flag.RST);
        return;
      }
      stream = new YamuxStream(streamId, this);
      this.streams.set(streamId, stream);
      this._sendWindowUpdate(streamId, Flag.ACK, 0);
      stream._onFrame(frame);
      this.emit('stream', stream);
      return;
    }
    // Frames for a stream we already reset or forgot are expected in flight; drop them.
    stream?._onFrame(frame);
  }

  private startKeepAlive(interval: number, timeout: number): void {
    this.keepAliveTimer = setInterval(() => {
      const timer = setTimeout(
        () => this.destroy(new Error(`keepalive ping unanswered for ${timeout} ms`)),
        timeout,
      );
      timer.unref();
      this.ping().then(
        () => clearTimeout(timer),
        () => clearTimeout(timer),
      );
    }, interval);
    this.keepAliveTimer.unref();
  }

  private writeFrame(buf: Buffer): boolean {
    if (this.closed_ || this.conn.destroyed || this.conn.writableEnded) return true;
    return this.conn.write(buf);
  }

  private releaseDrainWaiters(): void {
    const ws = this.drainWaiters;
    this.drainWaiters = [];
    for (const w of ws) w.resolve();
  }

  /** @internal resolves once the frame is handed to the underlying stream without overfilling it. */
  async _sendData(streamId: number, flags: number, payload: Buffer | undefined): Promise<void> {
    if (this.closed_) throw new YamuxSessionClosedError('cannot write');
    const length = payload?.length ?? 0;
    const ok = this.writeFrame(
      encodeFrame({ type: FrameType.Data, flags, streamId, length }, payload),
    );
    if (!ok) {
      await new Promise<void>((resolve, reject) => this.drainWaiters.push({ resolve, reject }));
      if (this.closed_) throw new YamuxSessionClosedError('cannot write');
    }
  }

  /** @internal */
  _sendWindowUpdate(streamId: number, flags: number, delta: number): void {
    this.writeFrame(encodeFrame({ type: FrameType.WindowUpdate, flags, streamId, length: delta }));
  }

  /** @internal */
  _sendFlags(streamId: number, flags: number): void {
    this._sendWindowUpdate(streamId, flags, 0);
  }

  /** @internal */
  _forget(streamId: number): void {
    this.streams.delete(streamId);
  }
}
