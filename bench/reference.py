#!/usr/bin/env python3
"""PyTorch reference of cogrpo's denoiser, diffusion loss and samplers.

The same network as crates/mdm (SMDM's TransEncoder: RMSNorm, rotate-half
RoPE, fused per-head qkv, SwiGLU, untied head, mask id = vocabulary size),
loaded from the safetensors file `cogrpo export` writes (SMDM's names), and
the same three samplers as crates/policy, written the way a PyTorch user
would: batched on tensors, categorical draws in float64.

  reference.py logits --weights W --heads H --input rows.json --out logits.json
  reference.py grads  --weights W --heads H --input rows.json --targets clean.json \\
                      --compare ours.safetensors
  reference.py bench  --weights W --heads H --seq L --batch 64 --train-batch 16 \\
                      --steps 16,64 --train-steps 3
Bench rows are JSON lines with cogrpo bench --json's fields.

Every command takes --device cpu|cuda and --precision: fp32 (float32
matmuls), tf32 (float32 storage, TF32 tensor-core matmuls on CUDA) or bf16
(autocast: bfloat16 matmuls and activations, float32 weights, optimizer
state and loss accumulation).
"""
import argparse
import json
import math
import resource
import sys
import time

import contextlib
import struct

import torch
import torch.nn.functional as F

try:
    from safetensors.torch import load_file
except ImportError:  # a machine with PyTorch but without safetensors
    def load_file(path):
        """The tensors of a safetensors file (float32/float16/bfloat16)."""
        dtypes = {"F32": torch.float32, "F16": torch.float16, "BF16": torch.bfloat16}
        with open(path, "rb") as f:
            n = struct.unpack("<Q", f.read(8))[0]
            header = json.loads(f.read(n))
            data = bytearray(f.read())
        out = {}
        for name, t in header.items():
            if name == "__metadata__":
                continue
            a, b = t["data_offsets"]
            out[name] = torch.frombuffer(data[a:b], dtype=dtypes[t["dtype"]]).reshape(t["shape"]).clone()
        return out

# Where and in what precision everything runs (set by main from --device
# and --precision).
DEVICE = torch.device("cpu")
PRECISION = "fp32"


def set_precision(precision):
    """fp32: float32 matmuls everywhere; tf32: TF32 tensor cores for float32
    matmuls on CUDA (PyTorch's default for convolutions, opt-in for
    matmuls); bf16: autocast regions (see `autocast`)."""
    global PRECISION
    PRECISION = precision
    tf32 = precision == "tf32"
    torch.backends.cuda.matmul.allow_tf32 = tf32
    torch.backends.cudnn.allow_tf32 = tf32
    torch.set_float32_matmul_precision("high" if tf32 else "highest")


def autocast():
    """bfloat16 autocast under --precision bf16, else nothing."""
    if PRECISION != "bf16":
        return contextlib.nullcontext()
    return torch.autocast(device_type=DEVICE.type, dtype=torch.bfloat16)


def sync():
    """Waits for the device's queued work (timings on CUDA are asynchronous)."""
    if DEVICE.type == "cuda":
        torch.cuda.synchronize()


class RMSNorm(torch.nn.Module):
    def __init__(self, d, eps):
        super().__init__()
        self.weight = torch.nn.Parameter(torch.ones(d))
        self.eps = eps

    def forward(self, x):
        return self.weight * (x * torch.rsqrt((x * x).mean(-1, keepdim=True) + self.eps))


class Block(torch.nn.Module):
    def __init__(self, d, heads, ff, eps):
        super().__init__()
        self.heads = heads
        self.norm_1 = RMSNorm(d, eps)
        self.attn = torch.nn.Linear(d, 3 * d, bias=False)  # rows per head: q_h, k_h, v_h
        self.proj = torch.nn.Linear(d, d, bias=False)
        self.norm_2 = RMSNorm(d, eps)
        self.w1 = torch.nn.Linear(d, ff, bias=False)
        self.w2 = torch.nn.Linear(d, ff, bias=False)
        self.w3 = torch.nn.Linear(ff, d, bias=False)

    def forward(self, x, cos, sin):
        b, n, d = x.shape
        hd = d // self.heads
        qkv = self.attn(self.norm_1(x)).view(b, n, self.heads, 3, hd)
        q, k, v = (qkv[:, :, :, i].transpose(1, 2) for i in range(3))  # [b, h, n, hd]
        q, k = rope(q, cos, sin), rope(k, cos, sin)
        y = F.scaled_dot_product_attention(q, k, v)  # bidirectional: no mask
        x = x + self.proj(y.transpose(1, 2).reshape(b, n, d))
        h = self.norm_2(x)
        return x + self.w3(F.silu(self.w1(h)) * self.w2(h))


def rope(x, cos, sin):
    """Rotate-half RoPE (lit-gpt): (x1 cos - x2 sin, x1 sin + x2 cos)."""
    half = x.shape[-1] // 2
    x1, x2 = x[..., :half], x[..., half:]
    rotated = torch.cat((-x2, x1), dim=-1)
    return x * cos + rotated * sin


class Denoiser(torch.nn.Module):
    def __init__(self, vocab, d, layers, heads, ff, max_len, eps=1e-5, base=10000.0):
        super().__init__()
        self.vocab, self.heads = vocab, heads
        self.wte = torch.nn.Embedding(vocab + 1, d)
        self.h = torch.nn.ModuleList(Block(d, heads, ff, eps) for _ in range(layers))
        self.ln_f = RMSNorm(d, eps)
        self.lm_head = torch.nn.Linear(d, vocab, bias=False)
        hd = d // heads
        theta = 1.0 / (base ** (torch.arange(0, hd, 2, dtype=torch.float32) / hd))
        angles = torch.outer(torch.arange(max_len, dtype=torch.float32), theta)
        self.register_buffer("cos", torch.cat((angles.cos(), angles.cos()), -1), persistent=False)
        self.register_buffer("sin", torch.cat((angles.sin(), angles.sin()), -1), persistent=False)

    def forward(self, idx):
        n = idx.shape[1]
        x = self.wte(idx)
        cos, sin = self.cos[:n], self.sin[:n]
        for block in self.h:
            x = block(x, cos, sin)
        return self.lm_head(self.ln_f(x))

    @classmethod
    def load(cls, path, heads, max_len):
        t = load_file(path)
        v1, d = t["transformer.wte.weight"].shape
        layers = 1 + max(int(k.split(".")[2]) for k in t if k.startswith("transformer.h."))
        ff = t["transformer.h.0.mlp.swiglu.w1.weight"].shape[0]
        m = cls(v1 - 1, d, layers, heads, ff, max_len)
        pairs = cls.name_pairs(layers)
        state = {ours: t[theirs] for theirs, ours in pairs}
        m.load_state_dict(state, strict=True)
        m.smdm_names = {ours: theirs for theirs, ours in pairs}
        return m

    @staticmethod
    def name_pairs(layers):
        """(SMDM name, this module's parameter name) for every weight."""
        pairs = [("transformer.wte.weight", "wte.weight"), ("transformer.ln_f.weight", "ln_f.weight"),
                 ("lm_head.weight", "lm_head.weight")]
        for i in range(layers):
            p = f"transformer.h.{i}."
            for ours, theirs in [("norm_1.weight", "norm_1.weight"), ("attn.weight", "attn.attn.weight"),
                                 ("proj.weight", "attn.proj.weight"), ("norm_2.weight", "norm_2.weight"),
                                 ("w1.weight", "mlp.swiglu.w1.weight"), ("w2.weight", "mlp.swiglu.w2.weight"),
                                 ("w3.weight", "mlp.swiglu.w3.weight")]:
                pairs.append((p + theirs, f"h.{i}.{ours}"))
        return pairs


def diffusion_loss(model, tokens, eps=1e-3):
    """SMDM's ELBO: t ~ U(0, 1) per row, mask with p = (1 - eps) t + eps,
    cross-entropy at masked positions weighted 1/p, divided by B * L."""
    b, n = tokens.shape
    t = torch.rand(b, 1, device=tokens.device)
    p = (1 - eps) * t + eps
    masked = torch.rand(b, n, device=tokens.device) < p
    x = torch.where(masked, torch.full_like(tokens, model.vocab), tokens)
    with autocast():
        logits = model(x)
    ce = F.cross_entropy(logits.float().reshape(b * n, -1), tokens.reshape(-1), reduction="none").view(b, n)
    return (ce * masked / p).sum() / (b * n)


def grpo_records(trajectories, steps, n, vocab, gen):
    """Recorded steps of the shape cogrpo's bench uses: each row revealed in
    `steps` equal chunks of a random order. Returns canvases [R*T, n], the
    flat indices of revealed positions, their tokens, and per-record
    advantages (+1, -1 alternating by row), on DEVICE."""
    chunk = -(-n // steps)
    canvases, index, targets, adv = [], [], [], []
    for r in range(trajectories):
        order = torch.randperm(n, generator=gen)
        clean = torch.randint(0, vocab, (n,), generator=gen)
        canvas = torch.full((n,), vocab, dtype=torch.long)
        for k, revealed in enumerate(order.split(chunk)):
            row = len(canvases)
            canvases.append(canvas.clone())
            index.append(row * n + revealed)
            targets.append(clean[revealed])
            adv.append(torch.full((len(revealed),), 1.0 if r % 2 == 0 else -1.0))
            canvas[revealed] = clean[revealed]
    return tuple(t.to(DEVICE) for t in (torch.stack(canvases), torch.cat(index), torch.cat(targets), torch.cat(adv)))


def grpo_loss(model, canvases, index, targets, adv, old, n, low=0.2, high=0.28):
    """The model factor's clipped surrogate (DAPO's asymmetric clip),
    sequence-level weights 1/n: as cogrpo's `grpo::loss::clipped_loss`."""
    with autocast():
        logits = model(canvases)
    logp = torch.log_softmax(logits.float().reshape(-1, logits.shape[-1])[index], -1)
    new = logp.gather(1, targets[:, None]).squeeze(1)
    ratio = torch.exp(new - old)
    surrogate = torch.minimum(ratio * adv, ratio.clamp(1 - low, 1 + high) * adv)
    return -(surrogate / n).sum()


def draw(logits, temperature, gen):
    """Tokens from softmax(logits / T) in float64 (Zheng et al.: float32
    Gumbel noise truncates the tail); rows of `logits` are positions."""
    probs = torch.softmax(logits.double() / temperature, dim=-1)
    return torch.multinomial(probs, 1, generator=gen).squeeze(-1)


@torch.no_grad()
def generate(model, b, n, kind, steps, gen, temperature=1.0):
    """Fills b all-mask rows of length n in `steps` steps; returns (tokens, NFE)."""
    mask = model.vocab
    x = torch.full((b, n), mask, dtype=torch.long, device=DEVICE)
    positions = torch.arange(n, device=DEVICE).expand(b, n)
    n0 = n
    nfe = 0
    for s in range(steps):
        masked = x == mask
        left = masked.sum(1)
        if kind == "ancestral":
            # From t to s every masked position is revealed w.p. (t - s) / t.
            remaining = steps - s
            pick = masked & (torch.rand(b, n, generator=gen, device=DEVICE) < 1.0 / remaining) if remaining > 1 else masked
        else:
            # Linear schedule: n0 (1 - (s + 1)/T) positions stay masked.
            target = round(n0 * (1 - (s + 1) / steps)) if s + 1 < steps else 0
            k = (left - target).clamp(min=0)
            if kind == "first_hitting":
                score = torch.rand(b, n, generator=gen, device=DEVICE)
            else:  # confidence: a candidate everywhere, keep the most likely
                score = None
            if score is not None:
                score = torch.where(masked, score, torch.full_like(score, -1.0))
                order = score.argsort(dim=1, descending=True)
                rank = torch.empty_like(order)
                rank.scatter_(1, order, positions)
                pick = masked & (rank < k.unsqueeze(1))
        if kind == "confidence":
            with autocast():
                logits = model(x).float()
            nfe += 1
            cand = draw(logits[masked], temperature, gen)
            conf = torch.full((b, n), float("-inf"), dtype=torch.float64, device=DEVICE)
            conf[masked] = torch.log_softmax(logits[masked].double(), -1).gather(1, cand[:, None]).squeeze(1)
            full = torch.full((b, n), mask, dtype=torch.long, device=DEVICE)
            full[masked] = cand
            order = conf.argsort(dim=1, descending=True)
            rank = torch.empty_like(order)
            rank.scatter_(1, order, positions)
            pick = masked & (rank < k.unsqueeze(1))
            x = torch.where(pick, full, x)
            continue
        if not pick.any():
            continue  # no reveal, no forward (the denoiser has no time input)
        with autocast():
            logits = model(x).float()
        nfe += 1
        x[pick] = draw(logits[pick], temperature, gen)
    return x, nfe


def row(what, batch, steps, tokens, total_seconds, seconds, nfe):
    """`tokens` processed in `total_seconds`; `seconds` per step or sample."""
    print(json.dumps({"what": what, "batch": batch, "steps": steps, "tokens_per_s": tokens / total_seconds,
                      "seconds": seconds, "nfe": nfe}), flush=True)


def timed_optimizer_steps(model, opt, loss_fn, steps):
    """Seconds of `steps` optimizer steps (loss, backward, global-norm
    clipping at 1, the optimizer's step) after one untimed warm-up step."""
    def step():
        opt.zero_grad(set_to_none=True)
        loss_fn().backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()

    step()
    sync()
    t0 = time.perf_counter()
    for _ in range(steps):
        step()
    sync()
    return time.perf_counter() - t0


def matmul_rates(shapes):
    """float32 GFLOP/s of x @ y per (m, k, n) shape: best of 10 after 3
    warm-ups (the shapes and the timing of cogrpo bench's `machine` line)."""
    rates = []
    for m, k, n in shapes:
        x = torch.rand(m, k, device=DEVICE)
        y = torch.rand(k, n, device=DEVICE)
        with autocast():
            for _ in range(3):
                (x @ y)[0, 0].item()
            best = float("inf")
            for _ in range(10):
                t0 = time.perf_counter()
                (x @ y)[0, 0].item()
                best = min(best, time.perf_counter() - t0)
        rates.append({"shape": [m, k, n], "gflops": 2 * m * k * n / best / 1e9})
    return rates


def bench(a):
    torch.manual_seed(0)
    model = Denoiser.load(a.weights, a.heads, a.seq).to(DEVICE)
    n, vocab = a.seq, model.vocab
    d, ff = model.wte.weight.shape[1], model.h[0].w1.weight.shape[0]
    print(json.dumps({"machine": {"torch": torch.__version__, "threads": torch.get_num_threads(),
                                  "matmul": matmul_rates([(1024, 1024, 1024), (1024, d, ff), (1024, ff, d)])}}),
          flush=True)
    gen = torch.Generator(device=DEVICE).manual_seed(0)
    where = f"{torch.get_num_threads()} thr" if DEVICE.type == "cpu" else f"{DEVICE.type} {PRECISION}"
    # Training: ELBO loss, backward, AdamW (as cogrpo's pretrain step).
    if a.train_steps > 0:
        opt = torch.optim.AdamW(model.parameters(), lr=1e-4, betas=(0.9, 0.99), eps=1e-8, weight_decay=0.01)
        tokens = torch.randint(0, vocab, (a.train_batch, n), generator=gen, device=DEVICE)
        secs = timed_optimizer_steps(model, opt, lambda: diffusion_loss(model, tokens), a.train_steps)
        row(f"train ({where})", a.train_batch, a.train_steps,
            a.train_batch * n * a.train_steps, secs, secs / a.train_steps, 0.0)
    # The Co-GRPO model update: recomputed token log-probs, clipped
    # surrogate, backward, clipping, AdamW (as cogrpo's grpo_update row).
    if a.train_steps > 0 and a.grpo_steps > 0:
        t = min(a.grpo_steps, n)
        opt = torch.optim.AdamW(model.parameters(), lr=1e-5, weight_decay=0.01)
        canvases, index, targets, adv = grpo_records(a.train_batch, t, n, vocab, torch.Generator().manual_seed(1))
        old = torch.full(targets.shape, -math.log(vocab), device=DEVICE)
        secs = timed_optimizer_steps(
            model, opt, lambda: grpo_loss(model, canvases, index, targets, adv, old, n), a.train_steps)
        row(f"grpo_update ({where})", a.train_batch, t,
            a.train_batch * t * n * a.train_steps, secs, secs / a.train_steps, 0.0)
    model.eval()
    for b in a.forward_batch:
        x = torch.full((b, n), vocab, dtype=torch.long, device=DEVICE)
        with torch.no_grad(), autocast():
            model(x).float().cpu().numpy()
            t0 = time.perf_counter()
            for _ in range(3):
                model(x).float().cpu().numpy()
        secs = time.perf_counter() - t0
        row("forward", b, 3, b * n * 3, secs, secs / 3, 1.0)
    for kind in a.samplers:
        for steps in a.steps:
            generate(model, a.batch, n, kind, steps, gen)
            sync()
            t0 = time.perf_counter()
            _, nfe = generate(model, a.batch, n, kind, steps, gen)
            sync()
            secs = time.perf_counter() - t0
            row(kind, a.batch, steps, a.batch * n, secs, secs, float(nfe))
    peak = {"peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}
    if DEVICE.type == "cuda":
        peak["peak_device_mib"] = torch.cuda.max_memory_allocated() / 2**20
    print(json.dumps(peak), flush=True)


def logits(a):
    rows = json.load(open(a.input))
    model = Denoiser.load(a.weights, a.heads, len(rows[0])).to(DEVICE)
    with torch.no_grad(), autocast():
        out = model(torch.tensor(rows, dtype=torch.long, device=DEVICE)).float().cpu()
    json.dump({"shape": list(out.shape), "logits": out.flatten().tolist()}, open(a.out, "w"))


def grads(a):
    """Gradients of the mean cross-entropy at the masked positions of
    `--input` (mask id = vocabulary size) against the clean `--targets`,
    compared with the gradients in `--compare` (SMDM names and layout):
    prints, per tensor, max |ours - torch| / max |torch|, as JSON."""
    rows, targets = json.load(open(a.input)), json.load(open(a.targets))
    model = Denoiser.load(a.weights, a.heads, len(rows[0])).to(DEVICE)
    x = torch.tensor(rows, dtype=torch.long, device=DEVICE)
    y = torch.tensor(targets, dtype=torch.long, device=DEVICE)
    masked = (x == model.vocab).float()
    with autocast():
        logits = model(x).float()
    ce = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), y.reshape(-1), reduction="none").view(x.shape)
    ((ce * masked).sum() / masked.sum()).backward()
    ours = load_file(a.compare)
    errors = {}
    for name, param in model.named_parameters():
        theirs = param.grad.float().cpu()
        mine = ours[model.smdm_names[name]]
        assert mine.shape == theirs.shape, f"{name}: {tuple(mine.shape)} vs {tuple(theirs.shape)}"
        errors[model.smdm_names[name]] = ((mine - theirs).abs().max() / theirs.abs().max().clamp_min(1e-30)).item()
    print(json.dumps(errors))


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    lg = sub.add_parser("logits")
    lg.add_argument("--weights", required=True)
    lg.add_argument("--heads", type=int, required=True)
    lg.add_argument("--input", required=True)
    lg.add_argument("--out", required=True)
    gr = sub.add_parser("grads")
    gr.add_argument("--weights", required=True)
    gr.add_argument("--heads", type=int, required=True)
    gr.add_argument("--input", required=True)
    gr.add_argument("--targets", required=True)
    gr.add_argument("--compare", required=True)
    bn = sub.add_parser("bench")
    bn.add_argument("--weights", required=True)
    bn.add_argument("--heads", type=int, required=True)
    bn.add_argument("--seq", type=int, required=True)
    bn.add_argument("--batch", type=int, default=64)
    bn.add_argument("--forward-batch", type=lambda s: [int(v) for v in s.split(",")], default=[64])
    bn.add_argument("--train-batch", type=int, default=16)
    bn.add_argument("--train-steps", type=int, default=3)
    bn.add_argument("--grpo-steps", type=int, default=4)
    bn.add_argument("--steps", type=lambda s: [int(v) for v in s.split(",")], default=[16])
    bn.add_argument("--samplers", type=lambda s: s.split(","), default=["ancestral", "first_hitting", "confidence"])
    bn.add_argument("--threads", type=int, default=0)
    for q in (lg, gr, bn):
        q.add_argument("--device", default="cpu", help="cpu or cuda (cuda:N)")
        q.add_argument("--precision", choices=["fp32", "tf32", "bf16"], default="fp32")
    a = p.parse_args()
    global DEVICE
    DEVICE = torch.device(a.device)
    if DEVICE.type == "cuda" and not torch.cuda.is_available():
        sys.exit("--device cuda: this PyTorch sees no CUDA device")
    set_precision(a.precision)
    if getattr(a, "threads", 0):
        torch.set_num_threads(a.threads)
    {"logits": logits, "grads": grads, "bench": bench}[a.cmd](a)


if __name__ == "__main__":
    sys.exit(main())
