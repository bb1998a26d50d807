"""Writes HF transformers BERT parity cases for the TextEncoder test (random init, eval, fp32, padding mask).

usage: hf_bert_case.py OUT_DIR
  model_weights.safetensors  BertModel state dict (with pooler)
  mlm_weights.safetensors    BertForMaskedLM state dict (decoder tied to word embeddings)
  io.safetensors             input_ids, attention_mask, token_type_ids, hidden, pooled, mlm_hidden, mlm_logits
  config.json                the janus TextEncoder options
"""
import json
import os
import sys

import torch
from safetensors.torch import save_file
from transformers import BertConfig, BertForMaskedLM, BertModel

CFG = dict(vocab_size=97, hidden_size=48, num_hidden_layers=2, num_attention_heads=4, intermediate_size=96,
           max_position_embeddings=32, type_vocab_size=2, layer_norm_eps=1e-12, hidden_act="gelu",
           hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
JANUS = dict(vocab_size=97, dim=48, depth=2, heads=4, mlp_dim=96, max_positions=32, type_vocab_size=2,
             norm_eps=1e-12, act="gelu")


def perturb(model):
    with torch.no_grad():
        for p in model.parameters():  # shared (tied) parameters appear once
            p.add_(torch.randn_like(p) * 0.05)


def state(model):
    return {k: v.detach().clone().contiguous() for k, v in model.state_dict().items()}


def main():
    out = sys.argv[1]
    os.makedirs(out, exist_ok=True)
    torch.manual_seed(7)
    config = BertConfig(**CFG)
    config._attn_implementation = "eager"
    model = BertModel(config).eval()
    perturb(model)
    B, L = 3, 11
    ids = torch.randint(0, CFG["vocab_size"], (B, L))
    mask = torch.ones(B, L, dtype=torch.long)
    mask[1, 7:] = 0  # right padding
    mask[2, 3:] = 0
    types = torch.zeros(B, L, dtype=torch.long)
    types[0, 5:] = 1
    with torch.no_grad():
        o = model(input_ids=ids, attention_mask=mask, token_type_ids=types)
    mlm = BertForMaskedLM(config).eval()
    perturb(mlm)
    assert mlm.cls.predictions.decoder.weight.data_ptr() == mlm.bert.embeddings.word_embeddings.weight.data_ptr()
    with torch.no_grad():
        h = mlm.bert(input_ids=ids, attention_mask=mask, token_type_ids=types).last_hidden_state
        logits = mlm(input_ids=ids, attention_mask=mask, token_type_ids=types).logits
    save_file(state(model), os.path.join(out, "model_weights.safetensors"))
    save_file(state(mlm), os.path.join(out, "mlm_weights.safetensors"))
    save_file({"input_ids": ids, "attention_mask": mask, "token_type_ids": types,
               "hidden": o.last_hidden_state.contiguous(), "pooled": o.pooler_output.contiguous(),
               "mlm_hidden": h.contiguous(), "mlm_logits": logits.contiguous()},
              os.path.join(out, "io.safetensors"))
    with open(os.path.join(out, "config.json"), "w") as f:
        json.dump(JANUS, f)
    return 0


if __name__ == "__main__":
    sys.exit(main())
