import { sdNotify } from '../native/native.js';

/**
 * Tell systemd (a unit with Type=notify) how the daemon is doing:
 * "READY=1" once it serves (after its ready line), "STOPPING=1" when a
 * signal starts its drain. Without $NOTIFY_SOCKET (not started by systemd)
 * it does nothing. A failure is said on stderr and otherwise ignored: the
 * daemon serves either way, and systemd's start timeout reports a unit
 * that never became ready.
 */
export function notifySystemd(name: string, message: string): void {
  const socket = process.env.NOTIFY_SOCKET;
  if (!socket) return;
  try {
    sdNotify(socket, message);
  } catch (e) {
    console.error(`gvfs ${name}: could not notify systemd (${socket}): ${(e as Error).message}`);
  }
}
