"""Reference order of torch.utils.data.DistributedSampler for the data loader test.

Usage: data_sampler_ref.py N WORLD SEED EPOCH SHUFFLE DROP_LAST [N WORLD ...] -> JSON list per case of
one index list per rank."""
import json
import sys

import torch
from torch.utils.data.distributed import DistributedSampler

args = [int(a) for a in sys.argv[1:]]
cases = []
for k in range(0, len(args), 6):
    n, world, seed, epoch, shuffle, drop_last = args[k:k + 6]
    out = []
    for rank in range(world):
        s = DistributedSampler(range(n), num_replicas=world, rank=rank, shuffle=bool(shuffle), seed=seed,
                               drop_last=bool(drop_last))
        s.set_epoch(epoch)
        out.append(list(iter(s)))
    cases.append(out)
print(json.dumps(cases))
