"""Reads the TensorBoard event files under a directory with tensorboard's own EventAccumulator and writes the
scalars as JSON {tag: [[step, value], ...]} to the given output path (used by tests/train to check janus's
hand-encoded event files)."""
import json
import sys

from tensorboard.backend.event_processing import event_accumulator


def main():
    logdir, out = sys.argv[1], sys.argv[2]
    acc = event_accumulator.EventAccumulator(logdir, size_guidance={event_accumulator.SCALARS: 0})
    acc.Reload()
    scalars = {tag: [[e.step, e.value] for e in acc.Scalars(tag)] for tag in acc.Tags()["scalars"]}
    with open(out, "w") as f:
        json.dump(scalars, f)


if __name__ == "__main__":
    main()
