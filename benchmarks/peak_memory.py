"""Peak memory of one attack, measured in a fresh process (issue 5: target ≤ 4× the gradient).

The parent builds the client and saves what the server holds (dL/dW, dL/db, W, b, W₂) to an
``.npz``; a spawned child loads it, runs a tiny warm-up attack (imports, thread pools), reads
its resident set size, runs the attack, and reports the kernel's high-water mark
(``getrusage`` ru_maxrss) minus that baseline.  Sampling RSS from a thread misses short peaks
and mixes in the parent's caches; a fresh process does not.  Reported as a multiple of the
size of dL/dW (m·n·8 bytes in float64).

    python benchmarks/peak_memory.py --batch-size 100 --width 1000
"""

import argparse
import json
import multiprocessing as mp
import os
import resource
import tempfile
from pathlib import Path

import numpy as np


def _rss():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def _child(path, max_time, queue):
    from gradinv import invert_layer
    from gradinv.cases import make_victim

    data = dict(np.load(path))
    tiny = make_victim("cross_entropy", batch_size=3, width=60, random_state=0)  # warm-up: imports, autograd
    invert_layer(tiny.grad_W.numpy(), tiny.grad_b.numpy(), random_state=0,
                 **{k: t.numpy() for k, t in tiny.knowledge().items()})
    base = _rss()
    grads = {k: data.pop(k) for k in ("grad_W", "grad_b")}
    res = invert_layer(grads["grad_W"], grads["grad_b"], random_state=0, max_time=max_time, **data)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    queue.put(dict(peak_bytes=peak - base, exact_found=int(res.sparse.sum()), time=res.time))


def attack_peak_memory(grad_W, grad_b, knowledge, *, max_time=300.0):
    """Peak extra memory (bytes) of ``invert_layer`` on these arrays, in a fresh process; also the
    number of sparse columns it found and its time.  ``knowledge``: keyword arguments of
    ``invert_layer`` (weight, bias, next_weight, next_bias_grad)."""
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "client.npz"
        np.savez(path, grad_W=np.asarray(grad_W), grad_b=np.asarray(grad_b),
                 **{k: np.asarray(v) for k, v in knowledge.items()})
        ctx = mp.get_context("spawn")
        queue = ctx.Queue()
        proc = ctx.Process(target=_child, args=(str(path), max_time, queue))
        proc.start()
        out = queue.get()
        proc.join()
    out["grad_bytes"] = int(np.asarray(grad_W).nbytes)
    out["peak_over_grad"] = out["peak_bytes"] / out["grad_bytes"]
    return out


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--batch-size", type=int, default=100)
    p.add_argument("--width", type=int, default=1000)
    p.add_argument("--kind", default="cross_entropy")
    p.add_argument("--max-time", type=float, default=300.0)
    args = p.parse_args(argv)
    from gradinv.cases import make_victim

    v = make_victim(args.kind, batch_size=args.batch_size, width=args.width, random_state=0)
    out = dict(victim=args.kind, m=args.width, b=args.batch_size,
               **attack_peak_memory(v.grad_W.numpy(), v.grad_b.numpy(),
                                    {k: t.numpy() for k, t in v.attack_kwargs().items()}, max_time=args.max_time))
    print(json.dumps(out))
    return out


if __name__ == "__main__":
    main()
