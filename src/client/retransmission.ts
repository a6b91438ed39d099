import { openAcceptOf } from '../channel/open.ts';
import { stagedMessage } from '../channel/record.ts';
import { makeSync } from '../channel/sync.ts';
import type { Core } from './core.ts';
import { withAttachment } from './rules.ts';
import { abandoned, type Runtime } from './runtime.ts';

/**
 * Sends again, backing off, what the peer has not answered: this side's staged proposal
 * (as a Sync, with its evidence if it has some) and, for an open this side accepted, its
 * acceptance. An accepted open the proposer never completes expires here.
 */
export class Retransmission {
  constructor(private readonly c: Core) {}

  arm(rt: Runtime): void {
    const c = this.c;
    if (rt.retransmit || c.stopped) return;
    rt.retransmit = setTimeout(() => {
      rt.retransmit = null;
      if (!rt.rec.staged && rt.rec.phase !== 'opening') {
        rt.backoff = c.timing.retransmitMs;
        return;
      }
      rt.backoff = c.doubled(rt.backoff);
      if (rt.rec.phase === 'opening') {
        // The proposer gave up on this channel, or never meant it: it expires. Nothing of
        // this side's is at stake in it, for nothing is funded before an open completes.
        if (abandoned(rt, c.timing)) return c.retire(rt);
        c.send(rt.rec.peer, openAcceptOf(rt.rec));
      } else {
        const sync = makeSync(rt.rec);
        if (sync) c.send(rt.rec.peer, sync);
        const staged = rt.rec.staged;
        // The peer needs the evidence with the proposal; a Sync carries only the proposal.
        if (staged?.attachment) c.send(rt.rec.peer, withAttachment(stagedMessage(rt.rec), staged.attachment));
      }
      this.arm(rt);
    }, rt.backoff);
    rt.retransmit.unref();
  }

  clear(rt: Runtime): void {
    if (rt.retransmit) clearTimeout(rt.retransmit);
    rt.retransmit = null;
    rt.backoff = this.c.timing.retransmitMs;
  }
}
