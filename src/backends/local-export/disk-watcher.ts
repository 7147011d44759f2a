import { FanWatch } from '../../native/fan-watch.js';
import { logger } from '../../util/log.js';
import type { LocalExport } from './local-export.js';

const log = logger('backend');

/** Where the disk watcher reports (the export's change log). */
export interface DiskChangeSink {
  record(fh: Buffer): void;
  /** What changed is unknown (events lost): every client must drop everything. */
  lost(): void;
  /** The watcher stopped for good: changes on the disk are no longer seen at all. */
  died?(): void;
}

/**
 * Changes made on a local export's disk by other programs (not through the
 * proxy server, whose own calls are logged as they are made), fed to the
 * export's change log so that poll-mode clients see them within a period.
 *
 * fanotify with FAN_REPORT_DFID_NAME on a filesystem mark
 * (native/src/fanwatch.c): needs CAP_SYS_ADMIN. Not root (or a file system
 * without file handles): nothing is watched, and `start` says so loudly.
 * Limits: other file systems mounted beneath the export are not seen;
 * writes through shared mappings make no event; a queue overflow (or a
 * server this far behind) makes every client drop everything; a name
 * removed by another program lists its directory and, when the export's
 * attribute cache still knew it, the removed object.
 */
export class DiskWatcher {
  private constructor(readonly fan: FanWatch) {}

  static start(exp: LocalExport, sink: DiskChangeSink, maxPending?: number): DiskWatcher | undefined {
    let fan: FanWatch;
    try {
      fan = new FanWatch(exp.root, {
        changes: (list) => {
          for (const c of list) for (const fh of exp.changedOnDisk(c)) sink.record(fh);
        },
        overflow: () => {
          log.warn({ export: exp.root }, 'disk watcher: events lost (fanotify queue overflow); every poll client of this export is told to drop everything');
          exp.lostDiskChanges();
          sink.lost();
        },
        died: () => {
          log.error({ export: exp.root }, 'disk watcher: its thread ended (fanotify read failed); changes made on the export disk by other programs NO LONGER reach poll-mode clients, and callback clients get no more delegations of it');
          sink.died?.(); // (overflow was reported first: every client dropped everything)
        },
      }, maxPending);
    } catch (e) {
      const err = e as NodeJS.ErrnoException;
      log.warn(
        { export: exp.root, code: err.code, err: err.message },
        `NOT WATCHING THE DISK of export ${exp.root}: ${err.code === 'EPERM' ? 'fanotify needs CAP_SYS_ADMIN (run the proxy server as root)' : 'fanotify refused'}; changes made there by other programs will NOT reach poll-mode clients (only changes through GVFS will)`,
      );
      return undefined;
    }
    log.info({ export: exp.root }, 'disk watcher: changes made on the export disk by other programs go to its change log (fanotify)');
    return new DiskWatcher(fan);
  }

  get counters(): FanWatch['c'] {
    return this.fan.c;
  }

  close(): Promise<void> {
    return this.fan.close();
  }
}
