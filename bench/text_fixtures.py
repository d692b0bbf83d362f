#!/usr/bin/env python3
"""Regenerates crates/text/tests/fixtures: the reference outputs that
`cargo test -p text` checks cogrpo's tokenizers and chat templates against.

- Two tokenizers trained on Tiny Shakespeare with Hugging Face `tokenizers`:
  a byte-level BPE (GPT-2 / Qwen / Llama-3 style) and a Metaspace BPE
  (SentencePiece / TinyLlama style), each with special tokens.
- 1,000 strings (Shakespeare lines, unicode, whitespace runs, special tokens
  inside text), their ids with and without special tokens, and their
  decodings with and without skipping special tokens, by Python's
  `tokenizers`.
- Three chat templates (LLaDA's, ChatML in Qwen2.5's form as Dream uses, a
  Llama-2 style one) rendered by `transformers`' `apply_chat_template` on
  a set of conversations, with and without the generation prompt; the
  renderings that raise (a Llama-2 conversation whose roles do not
  alternate) are recorded as errors.

Needs `pip install tokenizers transformers` (no torch). Run from the
repository root:  python3 bench/text_fixtures.py
"""

import json
import random
from pathlib import Path

import tokenizers
import transformers
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "crates/text/tests/fixtures"
CORPUS = ROOT / "data/tinyshakespeare/input.txt"
SPECIAL = ["<|endoftext|>", "<|mdm_mask|>", "<|start_header_id|>", "<|end_header_id|>",
           "<|eot_id|>", "<|im_start|>", "<|im_end|>", "<s>", "</s>", "<unk>"]


def byte_level_bpe():
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=1000, special_tokens=SPECIAL,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
                                  show_progress=False)
    tok.train([str(CORPUS)], trainer)
    return tok


def metaspace_bpe():
    tok = Tokenizer(models.BPE(unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Metaspace(replacement="\u2581", prepend_scheme="always")
    tok.decoder = decoders.Metaspace(replacement="\u2581", prepend_scheme="always")
    trainer = trainers.BpeTrainer(vocab_size=1000, special_tokens=SPECIAL, show_progress=False)
    tok.train([str(CORPUS)], trainer)
    # Llama's tokenizers put <s> first.
    tok.post_processor = processors.TemplateProcessing(
        single="<s> $A", special_tokens=[("<s>", tok.token_to_id("<s>"))])
    return tok


def strings(rng):
    lines = [l for l in CORPUS.read_text().splitlines() if l.strip()]
    odd = ["naïve café", "Straße", "日本語のテキスト", "emoji 🙂🚀 here", "עברית", "ελληνικά",
           "tab\tsep", "a  b   c    d", "\n\nleading newlines", "trailing spaces   ",
           "mixed\r\nline ends", "", " ", "\u00a0nbsp", "zero\u200bwidth", "𝔘𝔫𝔦𝔠𝔬𝔡𝔢"]
    out = []
    for i in range(1000):
        kind = i % 5
        if kind == 0:
            s = rng.choice(lines)
        elif kind == 1:
            s = rng.choice(odd)
        elif kind == 2:
            s = " ".join(rng.choice(lines) for _ in range(rng.randint(1, 3)))
            s = s.replace(" ", " " * rng.randint(1, 4), rng.randint(0, 3))
        elif kind == 3:
            a, b = rng.choice(lines), rng.choice(lines + odd)
            s = f"{a}{rng.choice(SPECIAL)}{b}"
        else:
            s = rng.choice(odd) + rng.choice(["\n", "\t", "  ", ""]) + rng.choice(lines)
        out.append(s)
    return out


def encode_all(tok, texts):
    with_special = [tok.encode(t, add_special_tokens=True).ids for t in texts]
    plain = [tok.encode(t, add_special_tokens=False).ids for t in texts]
    return {
        "ids": with_special,
        "ids_plain": plain,
        "decoded": [tok.decode(ids, skip_special_tokens=False) for ids in with_special],
        "decoded_skip": [tok.decode(ids, skip_special_tokens=True) for ids in with_special],
    }


LLADA = ("{% set loop_messages = messages %}{% for message in loop_messages %}{% set content = "
         "'<|start_header_id|>' + message['role'] + '<|end_header_id|>\n\n'+ message['content'] "
         "| trim + '<|eot_id|>' %}{% if loop.index0 == 0 %}{% set content = bos_token + content %}"
         "{% endif %}{{ content }}{% endfor %}{% if add_generation_prompt %}"
         "{{ '<|start_header_id|>assistant<|end_header_id|>\n\n' }}{% endif %}")

CHATML = """{%- if messages[0]['role'] == 'system' %}
    {{- '<|im_start|>system\\n' + messages[0]['content'] + '<|im_end|>\\n' }}
{%- else %}
    {{- '<|im_start|>system\\nYou are a helpful assistant.<|im_end|>\\n' }}
{%- endif %}
{%- for message in messages %}
    {%- if (message.role == "user") or (message.role == "system" and not loop.first) or (message.role == "assistant") %}
        {{- '<|im_start|>' + message.role + '\\n' + message.content + '<|im_end|>' + '\\n' }}
    {%- endif %}
{%- endfor %}
{%- if add_generation_prompt %}
    {{- '<|im_start|>assistant\\n' }}
{%- endif %}
"""

LLAMA2 = ("{% if messages[0]['role'] == 'system' %}{% set loop_messages = messages[1:] %}"
          "{% set system_message = messages[0]['content'] %}{% else %}"
          "{% set loop_messages = messages %}{% set system_message = false %}{% endif %}"
          "{% for message in loop_messages %}{% if (message['role'] == 'user') != "
          "(loop.index0 % 2 == 0) %}{{ raise_exception('Conversation roles must alternate "
          "user/assistant/user/assistant/...') }}{% endif %}{% if loop.index0 == 0 and "
          "system_message != false %}{% set content = '<<SYS>>\\n' + system_message + "
          "'\\n<</SYS>>\\n\\n' + message['content'] %}{% else %}{% set content = "
          "message['content'] %}{% endif %}{% if message['role'] == 'user' %}"
          "{{ bos_token + '[INST] ' + content.strip() + ' [/INST]' }}{% elif message['role'] == "
          "'assistant' %}{{ ' '  + content.strip() + ' ' + eos_token }}{% endif %}{% endfor %}")

TEMPLATES = {
    "llada": {"template": LLADA, "bos_token": "<|startoftext|>", "eos_token": "<|eot_id|>"},
    "chatml": {"template": CHATML, "bos_token": None, "eos_token": "<|im_end|>"},
    "llama2": {"template": LLAMA2, "bos_token": "<s>", "eos_token": "</s>"},
}

CONVERSATIONS = [
    [{"role": "user", "content": "Solve the puzzle: 1 _ _ 4"}],
    [{"role": "system", "content": "You are a careful solver."},
     {"role": "user", "content": "  Make 24 from 3 4 5 6.  "}],
    [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello! "},
     {"role": "user", "content": "Count: 1 2 3"}],
    [{"role": "user", "content": "unicode: naïve 日本 🙂\n\nnew paragraph"}],
    [{"role": "user", "content": "a"}, {"role": "user", "content": "b"}],
]


def chat():
    rendered, errors = {}, {}
    for name, t in TEMPLATES.items():
        tok = transformers.PreTrainedTokenizerFast(tokenizer_object=byte_level_bpe())
        tok.chat_template = t["template"]
        if t["bos_token"]:
            tok.bos_token = t["bos_token"]
        tok.eos_token = t["eos_token"]
        rendered[name], errors[name] = [], []
        for i, conv in enumerate(CONVERSATIONS):
            try:
                pair = [tok.apply_chat_template(conv, tokenize=False, add_generation_prompt=g)
                        for g in (False, True)]
            except Exception:  # raise_exception in the template
                pair = None
                errors[name].append(i)
            rendered[name].append(pair)
    return {"templates": TEMPLATES, "conversations": CONVERSATIONS,
            "rendered": rendered, "errors": errors}


def main():
    OUT.mkdir(parents=True, exist_ok=True)
    texts = strings(random.Random(32))
    refs = {"tokenizers": tokenizers.__version__, "strings": texts}
    for name, make in [("bpe", byte_level_bpe), ("metaspace", metaspace_bpe)]:
        tok = make()
        tok.save(str(OUT / f"{name}.tokenizer.json"))
        refs[name] = encode_all(tok, texts)
    (OUT / "encodings.json").write_text(json.dumps(refs, ensure_ascii=False))
    c = chat()
    c["transformers"] = transformers.__version__
    (OUT / "chat.json").write_text(json.dumps(c, ensure_ascii=False, indent=1))
    print("wrote", OUT, "with tokenizers", tokenizers.__version__,
          "and transformers", transformers.__version__)


if __name__ == "__main__":
    main()
