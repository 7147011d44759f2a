import type { Backend, SourcedRead } from '../backend/backend.js';
import { localReadsOf, wholeFilesOf, type LocalRead, type LocalReads, type WholeFiles } from '../backend/capabilities.js';
import type { StableHow } from '../nfs3/constants.js';
import type { WriteResult } from '../nfs3/types.js';
import type { Credentials } from '../rpc/types.js';
import { countRead, type DataCounters } from '../util/counters.js';
import { PassthroughBackend } from './passthrough.js';

/**
 * The top of a session's stack (front end ∘ TopMeter ∘ meta-data ∘ cache ∘
 * ChannelMeter ∘ link): counts what the readers and writers above asked for
 * and where each byte read came from (util/counters.ts). Counts answers only;
 * failed calls move no bytes here.
 */
export class TopMeter extends PassthroughBackend {
  constructor(
    inner: Backend,
    readonly counters: DataCounters,
  ) {
    super(inner);
  }

  override async read(cred: Credentials, fh: Buffer, offset: number, count: number): Promise<SourcedRead> {
    const r = await this.inner.read(cred, fh, offset, count);
    countRead(this.counters, r.count, r.from);
    return r;
  }

  /** Optional capability (backend/capabilities.ts): the layer below's local answers, counted as read counts them (once answered). */
  get localReads(): LocalReads | undefined {
    const below = localReadsOf(this.inner);
    if (!below) return undefined;
    return {
      readLocal: async (cred: Credentials, fh: Buffer, offset: number, count: number): Promise<LocalRead | undefined> => {
        const r = await below.readLocal(cred, fh, offset, count);
        if (!r) return r;
        return {
          ...r,
          release: (answered) => {
            if (answered) {
              countRead(this.counters, r.count, r.from);
              this.counters.splicedBytes += r.count;
            }
            r.release(answered);
          },
        };
      },
    };
  }

  /** Optional capability: the layer below's whole local files, as they are (what the kernel then reads is not counted here). */
  get wholeFiles(): WholeFiles | undefined {
    return wholeFilesOf(this.inner);
  }

  override async write(cred: Credentials, fh: Buffer, offset: number, data: Buffer, stable: StableHow): Promise<WriteResult> {
    const r = await this.inner.write(cred, fh, offset, data, stable);
    this.counters.writeCalls++;
    this.counters.writeBytes += r.count;
    return r;
  }
}

/**
 * Just above the link: counts the READ and WRITE payload that crosses the
 * channel, whichever layer sent the call (demand, read-ahead, flush,
 * write-through). Bulk transfers go by the extension program, not through
 * here: the meta-data layer counts those.
 */
export class ChannelMeter extends PassthroughBackend {
  constructor(
    inner: Backend,
    readonly counters: DataCounters,
  ) {
    super(inner);
  }

  override async read(cred: Credentials, fh: Buffer, offset: number, count: number): Promise<SourcedRead> {
    const r = await this.inner.read(cred, fh, offset, count);
    this.counters.channelReadBytes += r.count;
    return { ...r, from: { channel: r.count } };
  }

  override async write(cred: Credentials, fh: Buffer, offset: number, data: Buffer, stable: StableHow): Promise<WriteResult> {
    const r = await this.inner.write(cred, fh, offset, data, stable);
    this.counters.channelWriteBytes += r.count;
    return r;
  }
}
