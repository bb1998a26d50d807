"""Times reformer-pytorch 1.4.4 LSHAttention forward+backward for janus_bench_attention (same shapes/threads).

usage: reformer_lsh.py L THREADS REPS  -> prints "RESULT reformer_lsh L ms peak_mib"
Peak memory = VmHWM - VmRSS before the first call (same definition as the C++ side).
"""
import sys
import time

import torch
import reformer_pytorch.reformer_pytorch as rp


def status(key):
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1]) / 1024.0
    return 0.0


def main():
    L, threads, reps = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    H, d = 4, 64
    attn = rp.LSHAttention(bucket_size=64, n_hashes=4, causal=False)
    qk = torch.randn(H, L, d, requires_grad=True)
    v = torch.randn(H, L, d, requires_grad=True)
    r = torch.randn(H, L, d)

    def step():
        out, _, _ = attn(qk, v)
        (out * r).sum().backward()
        qk.grad = None
        v.grad = None

    rss0 = status("VmRSS")
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
    except OSError:
        pass
    step()
    peak = status("VmHWM") - rss0
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        step()
        times.append((time.perf_counter() - t0) * 1000.0)
    print(f"RESULT reformer_lsh {L} {min(times):.2f} {peak:.1f}", flush=True)


if __name__ == "__main__":
    main()
