"""Caption-metric parity cases for janus::eval against PyPI pycocoevalcap 1.2 (Bleu(4), Cider, Rouge).

usage:
  eval_caption_cases.py gen OUT_DIR SEED N   -> OUT_DIR/cases.json (raw caption sets) and a COCO-format
                                               OUT_DIR/annotations.json + OUT_DIR/results.json for the CLI
  eval_caption_cases.py score IN OUT         -> IN: [{"cands": [...], "refs": [[...]]}] already tokenised;
                                               OUT: pycocoevalcap corpus and per-image scores for every set
  eval_caption_cases.py score_tokens IN OUT  -> IN: janus_eval --dump-tokens {"gts", "res"}; OUT: COCOEvalCap keys

Both implementations are fed the same tokenised strings (pycocoevalcap's PTBTokenizer needs Java).
"""
import contextlib
import io
import json
import random
import sys

from pycocoevalcap.bleu.bleu import Bleu
from pycocoevalcap.cider.cider import Cider
from pycocoevalcap.rouge.rouge import Rouge

WORDS = ("a man woman dog cat two three people riding bike horse red blue green small large on in with the of "
         "street table next to standing sitting playing frisbee grass field kitchen plate pizza food white black "
         "young old train station water boat beach near computer desk").split()
EXTRA = ["café", "naïve", "Über", "jalapeño", "日本", "straße", "crème brûlée", "Zoë", "piñata", "smörgåsbord",
         "3.5", "1,000", "10:30", "$5", "50%", "#1", "don't", "can't", "dog's", "dogs'", "it's", "they're",
         "black-and-white", "t-shirt", "x-ray", "“quoted”", "‘single’", "(parenthesis)", "[bracket]", "{brace}",
         "--", "-", "...", "…", "—", "–", "!", "?", ";", ":", "\"", "'", "``", "''", "&", "at&t", "and/or",
         "e-mail", "U.S.", "Mr.", "2", "10", "100", "7th", "1990s", "4x4"]
PUNCT_END = ["", "", ".", ".", "!", "?", " .", "...", " !", ";"]


def noisy_case(rng, w):
    r = rng.random()
    if r < 0.12:
        return w.upper()
    if r < 0.3:
        return w.capitalize()
    return w


def sentence(rng, base):
    words = list(base)
    for _ in range(rng.randint(0, 3)):  # perturb
        op = rng.random()
        if op < 0.3 and words:
            words[rng.randrange(len(words))] = rng.choice(WORDS)
        elif op < 0.55:
            words.insert(rng.randint(0, len(words)), rng.choice(EXTRA))
        elif op < 0.7 and words:
            del words[rng.randrange(len(words))]
        elif op < 0.85 and words:
            i = rng.randrange(len(words))
            words[i:i + 1] = [words[i]] * rng.randint(2, 4)  # repeated words
        else:
            i = rng.randint(0, len(words))
            words.insert(i, rng.choice([",", ", ", "(", ")", "\"", "-"]))
    words = [noisy_case(rng, w) for w in words]
    sep = rng.choice([" ", " ", " ", "  ", "\t", "\u00a0"])
    return sep.join(words) + rng.choice(PUNCT_END)


def make_set(rng):
    n_img = rng.choice([1, 2, 3, 5, 8, 12])
    cands, refs = [], []
    for _ in range(n_img):
        base = [rng.choice(WORDS) for _ in range(rng.randint(3, 11))]
        refs.append([sentence(rng, base) for _ in range(rng.randint(1, 6))])
        r = rng.random()
        if r < 0.06:
            cands.append(rng.choice(["", " ", "...", "!", "a", "The", "-- ."]))  # empty-ish
        elif r < 0.12:
            cands.append(refs[-1][0])  # exact match
        elif r < 0.2:
            cands.append(" ".join(rng.choice(WORDS) for _ in range(rng.randint(1, 20))))  # unrelated
        else:
            cands.append(sentence(rng, base))
        if rng.random() < 0.05:
            refs[-1].append(rng.choice(["...", "", "A", "?"]))  # degenerate reference
    return {"cands": cands, "refs": refs, "raw": rng.random() < 0.15}


def gen(out, seed, n):
    rng = random.Random(seed)
    cases = [make_set(rng) for _ in range(n)]
    with open(f"{out}/cases.json", "w", encoding="utf-8") as f:
        json.dump(cases, f, ensure_ascii=False)
    # One COCO-format set for the tool: 40 images, 5 references each, integer ids.
    images, anns, results = [], [], []
    ann_id = 1
    for k in range(40):
        img = 100000 + 7 * k
        base = [rng.choice(WORDS) for _ in range(rng.randint(4, 10))]
        images.append({"id": img, "file_name": f"COCO_val2014_{img:012d}.jpg"})
        for _ in range(5):
            anns.append({"image_id": img, "id": ann_id, "caption": sentence(rng, base)})
            ann_id += 1
        results.append({"image_id": img, "caption": sentence(rng, base) if k % 9 else rng.choice(EXTRA) + " !"})
    with open(f"{out}/annotations.json", "w", encoding="utf-8") as f:
        json.dump({"images": images, "annotations": anns}, f, ensure_ascii=False)
    with open(f"{out}/results.json", "w", encoding="utf-8") as f:
        json.dump(results, f, ensure_ascii=False)


def pyco(gts, res):
    with contextlib.redirect_stdout(io.StringIO()):  # Bleu prints its totals
        b, bs = Bleu(4).compute_score(gts, res)
        c, cs = Cider().compute_score(gts, res)
        r, rs = Rouge().compute_score(gts, res)
    return b, bs, float(c), [float(x) for x in cs], float(r), [float(x) for x in rs]


def score(inp, out):
    with open(inp, encoding="utf-8") as f:
        cases = json.load(f)
    expected = []
    for case in cases:
        gts = {i: list(r) for i, r in enumerate(case["refs"])}
        res = {i: [c] for i, c in enumerate(case["cands"])}
        b, bs, c, cs, r, rs = pyco(gts, res)
        expected.append({"bleu": b, "bleu_per": [list(x) for x in zip(*bs)], "cider": c, "cider_per": cs,
                         "rouge": r, "rouge_per": rs})
    with open(out, "w") as f:
        json.dump(expected, f)


def score_tokens(inp, out):
    with open(inp, encoding="utf-8") as f:
        t = json.load(f)
    gts, res = t["gts"], t["res"]
    b, bs, c, cs, r, rs = pyco(gts, res)
    keys = list(gts.keys())
    per = {k: {"Bleu_1": bs[0][i], "Bleu_2": bs[1][i], "Bleu_3": bs[2][i], "Bleu_4": bs[3][i], "CIDEr": cs[i],
               "ROUGE_L": rs[i]} for i, k in enumerate(keys)}
    with open(out, "w") as f:
        json.dump({"Bleu_1": b[0], "Bleu_2": b[1], "Bleu_3": b[2], "Bleu_4": b[3], "CIDEr": c, "ROUGE_L": r,
                   "per_image": per}, f)


if __name__ == "__main__":
    cmd = sys.argv[1]
    if cmd == "gen":
        gen(sys.argv[2], int(sys.argv[3]), int(sys.argv[4]))
    elif cmd == "score":
        score(sys.argv[2], sys.argv[3])
    elif cmd == "score_tokens":
        score_tokens(sys.argv[2], sys.argv[3])
    else:
        sys.exit(f"unknown command {cmd}")
