"""Beyond RL: a byte-level language model of the Python standard library, trained with AlphaGrad and with AdamW,
SGD with Nesterov momentum, Lion and Muon, each with linear warmup and cosine decay of its learning rate.

    python examples/lm_benchmark.py --optimizer adamw --lr 1e-3                       # one run (one torch thread)
    python examples/lm_benchmark.py --optimizer alphagrad --lr 1e-3 --alpha 2 --size-aware --momentum 0.9
    python examples/lm_benchmark.py --optimizer alphagrad --lr 1e-3 --alpha 2 --size-aware --adaptive
    python examples/lm_benchmark.py --optimizer adamw --lr 1e-3 --devices 2           # sharded (FSDP2), 2 processes

Data: every ``.py`` file under ``sysconfig.get_paths()["stdlib"]`` outside ``site-packages``, as bytes (vocabulary 256),
files in sorted order, every tenth file (index % 10 == 9) for validation; no downloads. The corpus differs between
Python versions: the result records the version and both split sizes. Model: a decoder-only transformer (pre-norm
blocks, causal ``scaled_dot_product_attention``, GELU MLP, tied byte embedding). Every run takes the same number of
steps and batches (the same seed draws the same windows for every optimizer), logs to ``OUT/<name>/metrics.csv`` (with
the gradient-norm monitor, and for AlphaGrad the saturation and alpha monitors) and writes ``OUT/<name>/result.json``:
validation loss in bits per byte along the run and at the end, tokens/s, optimizer state bytes per parameter (counted
from the state tensors) and the process's peak memory. With ``--devices N`` the model is sharded by FSDP2 (Lightning's
``ModelParallelStrategy``, N CPU processes, gloo): each process draws ``batch / N`` windows per step (its own stream),
so a step sees as many windows as the single-process run; validation and the result are rank 0's.

Default size (``examples/lm_sweep.py`` runs every optimizer at it): width 128, 4 blocks of 4 heads, context 256 bytes,
batch 16, 400 steps (1.6M training bytes), 858,880 parameters; sized so that a run takes about 3 minutes on one core
(measured on a 2-core AMD EPYC: 200 steps of AlphaGrad with its monitors in 85 s, 9,600 tokens/s; width 256 ran at
3,000 tokens/s).
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import resource
import sys
import sysconfig
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import lightning as L
import torch
from lightning.pytorch.loggers import CSVLogger
from lightning.pytorch.strategies import ModelParallelStrategy
from torch import Tensor, nn
from torch.nn import functional as F

from lightning_alphagrad import AlphaGrad, SaturationTargetAlpha, pause_for_gloo_at_exit, weight_decay_groups
from lightning_alphagrad.callbacks import AlphaMonitor, GradNormMonitor, TanhSaturationMonitor

OPTIMIZERS = ("adamw", "sgd", "lion", "muon", "alphagrad")


# ------------------------------------------------------------------------------------------ data
def stdlib_corpus() -> tuple[Tensor, Tensor, dict[str, Any]]:
    """``(train, validation, info)``: the standard library's sources as two 1-D uint8 tensors (files joined by a
    zero byte), split by file; ``info`` holds the Python version, file counts and sizes in bytes."""
    root = Path(sysconfig.get_paths()["stdlib"])
    files = sorted(f for f in root.rglob("*.py") if "site-packages" not in f.relative_to(root).parts)
    splits: tuple[list[bytes], list[bytes]] = ([], [])
    for index, path in enumerate(files):
        splits[index % 10 == 9].append(path.read_bytes())
    train, validation = (torch.frombuffer(bytearray(b"\0".join(part)), dtype=torch.uint8) for part in splits)
    info = {"python": platform.python_version(), "train_files": len(splits[0]), "validation_files": len(splits[1]),
            "train_bytes": train.numel(), "validation_bytes": validation.numel()}  # fmt: skip
    return train, validation, info


def windows(data: Tensor, batch: int, context: int, generator: torch.Generator) -> tuple[Tensor, Tensor]:
    """``batch`` random windows: inputs and next-byte targets, both ``(batch, context)`` int64."""
    starts = torch.randint(data.numel() - context - 1, (batch,), generator=generator)
    rows = data[starts[:, None] + torch.arange(context + 1)].long()
    return rows[:, :-1], rows[:, 1:]


# ------------------------------------------------------------------------------------------ model
class Block(nn.Module):
    """Pre-norm transformer block: ``x + attn(ln(x))``, then ``x + mlp(ln(x))``; ``(batch, time, width)``."""

    def __init__(self, width: int, heads: int) -> None:
        super().__init__()
        self.heads = heads
        self.ln1, self.ln2 = nn.LayerNorm(width), nn.LayerNorm(width)
        self.qkv, self.proj = nn.Linear(width, 3 * width), nn.Linear(width, width)
        self.mlp = nn.Sequential(nn.Linear(width, 4 * width), nn.GELU(), nn.Linear(4 * width, width))

    def forward(self, x: Tensor) -> Tensor:
        b, t, c = x.shape
        q, k, v = self.qkv(self.ln1(x)).view(b, t, 3, self.heads, c // self.heads).permute(2, 0, 3, 1, 4)
        attended = F.scaled_dot_product_attention(q, k, v, is_causal=True).transpose(1, 2).reshape(b, t, c)
        x = x + self.proj(attended)
        return x + self.mlp(self.ln2(x))


class ByteLM(L.LightningModule):
    """Decoder-only transformer over bytes, trained on ``train`` windows; logs ``train/bpb`` and, every
    ``eval_every`` steps and at the end, ``val/bpb`` on fixed validation windows (bits per byte)."""

    def __init__(self, train: Tensor, validation: Tensor, optimizer: str, lr: float, steps: int, width: int = 256,
                 layers: int = 4, heads: int = 4, context: int = 256, batch: int = 16, eval_every: int = 100,
                 seed: int = 0, alpha: float = 2.0, momentum: float = 0.9, size_aware: bool = True,
                 adaptive: bool = False, weight_decay: float = 0.1, devices: int = 1) -> None:  # fmt: skip
        super().__init__()
        if optimizer not in OPTIMIZERS:
            raise ValueError(f"Invalid optimizer: {optimizer!r}; it must be one of {', '.join(OPTIMIZERS)}")
        if not (lr > 0 and steps > 0):
            raise ValueError(f"Invalid lr/steps: {lr}/{steps}; both must be > 0")
        self.train_data, self.settings = train, dict(optimizer=optimizer, lr=lr, steps=steps, alpha=alpha,
                                                      momentum=momentum, size_aware=size_aware, adaptive=adaptive,
                                                      weight_decay=weight_decay)  # fmt: skip
        if batch % devices:
            raise ValueError(f"Invalid batch: {batch}; it must be a multiple of devices ({devices})")
        self.context, self.batch, self.eval_every, self.devices = context, batch, eval_every, devices
        torch.manual_seed(seed)
        self.embed, self.position = nn.Embedding(256, width), nn.Parameter(torch.zeros(context, width))
        nn.init.normal_(self.embed.weight, std=0.02)  # GPT-2's scale: the untrained model predicts ~8 bits/byte
        self.blocks = nn.ModuleList(Block(width, heads) for _ in range(layers))
        self.ln = nn.LayerNorm(width)
        self.seed = seed
        self.generator = torch.Generator().manual_seed(seed)
        self.val_batches = [windows(validation, batch, context, torch.Generator().manual_seed(10**6 + i))
                            for i in range(8)]  # fmt: skip
        self.curve: list[tuple[int, float]] = []
        self.automatic_optimization = False

    def configure_model(self) -> None:
        """Sharded runs (``devices > 1``): FSDP2 per block and for the rest, as Lightning documents it."""
        if self.devices == 1:
            return
        pause_for_gloo_at_exit()
        from torch.distributed.fsdp import fully_shard

        mesh = self.device_mesh["data_parallel"]
        for block in self.blocks:
            fully_shard(block, mesh=mesh)
        fully_shard(self, mesh=mesh)

    def on_train_start(self) -> None:
        if self.devices > 1:  # one stream of windows per process, the single-process stream on rank 0
            self.generator.manual_seed(self.seed + 7919 * self.global_rank)

    def forward(self, tokens: Tensor) -> Tensor:
        """Next-byte logits ``(batch, time, 256)`` for ``tokens`` ``(batch, time)``."""
        x = self.embed(tokens) + self.position[: tokens.shape[1]]
        for block in self.blocks:
            x = block(x)
        return self.ln(x) @ self.embed.weight.T

    def bits_per_byte(self, tokens: Tensor, targets: Tensor) -> Tensor:
        return F.cross_entropy(self(tokens).flatten(0, 1), targets.flatten()) / math.log(2)

    @torch.no_grad()
    def validate(self, step: int) -> None:
        """Mean bits per byte on the validation windows, into ``curve`` and the loggers at ``step``."""
        value = sum(float(self.bits_per_byte(x, y)) for x, y in self.val_batches) / len(self.val_batches)
        self.curve.append((step, value))
        for logger in self.trainer.loggers:
            logger.log_metrics({"val/bpb": value}, step=step)

    def train_dataloader(self) -> torch.utils.data.DataLoader:
        return torch.utils.data.DataLoader(range(self.settings["steps"]), batch_size=None)

    def training_step(self, batch: int, batch_idx: int) -> None:
        if batch_idx % self.eval_every == 0:
            self.validate(batch_idx)
        loss = self.bits_per_byte(*windows(self.train_data, self.batch // self.devices, self.context, self.generator))
        optimizers = self.optimizers()
        optimizers = optimizers if isinstance(optimizers, list) else [optimizers]
        for optimizer in optimizers:
            optimizer.zero_grad()
        self.manual_backward(loss)
        for optimizer in optimizers:
            optimizer.step()
        schedulers = self.lr_schedulers()
        for scheduler in schedulers if isinstance(schedulers, list) else [schedulers]:
            scheduler.step()
        self.log("train/bpb", loss.detach())

    def on_train_end(self) -> None:
        self.validate(self.settings["steps"])

    def configure_optimizers(self) -> Any:
        s = self.settings
        groups = weight_decay_groups(self, s["weight_decay"])  # no decay for biases and LayerNorms
        if s["optimizer"] == "adamw":
            optimizers = [torch.optim.AdamW(groups, lr=s["lr"], betas=(0.9, 0.95))]
        elif s["optimizer"] == "sgd":
            optimizers = [torch.optim.SGD(groups, lr=s["lr"], momentum=0.9, nesterov=True)]
        elif s["optimizer"] == "lion":
            from lion_pytorch import Lion  # the lion-pytorch package (the [bench] and [dev] extras)

            optimizers = [Lion(groups, lr=s["lr"], betas=(0.9, 0.99))]
        elif s["optimizer"] == "muon":  # Muon for the blocks' 2-D matrices, AdamW for the rest (its documentation)
            hidden = [p for p in self.blocks.parameters() if p.ndim == 2]
            rest = [p for p in self.parameters() if all(p is not h for h in hidden)]
            # match_rms_adamw scales Muon's step to AdamW's update RMS, so that one lr serves both
            optimizers = [torch.optim.Muon(hidden, lr=s["lr"], weight_decay=s["weight_decay"],
                                           adjust_lr_fn="match_rms_adamw"),
                          torch.optim.AdamW(rest, lr=s["lr"], betas=(0.9, 0.95), weight_decay=0.0)]  # fmt: skip
        else:
            optimizers = [AlphaGrad(groups, lr=s["lr"], alpha=s["alpha"], momentum=s["momentum"],
                                    size_aware=s["size_aware"])]  # fmt: skip
        warmup = max(1, s["steps"] // 20)

        def factor(step: int) -> float:  # linear warmup, then cosine decay to 10 % of the peak
            if step < warmup:
                return (step + 1) / warmup
            return 0.1 + 0.45 * (1 + math.cos(math.pi * min(1.0, (step - warmup) / max(1, s["steps"] - warmup))))

        schedulers = [torch.optim.lr_scheduler.LambdaLR(o, factor) for o in optimizers]
        if s["adaptive"]:
            schedulers.append(SaturationTargetAlpha(optimizers[0], target=0.1, every=10))
        return optimizers, schedulers


def state_bytes_per_parameter(optimizers: Sequence[torch.optim.Optimizer], parameters: int) -> float:
    """Bytes of all optimizer state tensors (scalars such as step counts excluded) per model parameter."""
    total = sum(v.numel() * v.element_size() for o in optimizers for state in o.state.values()
                for v in state.values() if isinstance(v, Tensor) and v.numel() > 1)  # fmt: skip
    return total / parameters


def run_name(args: argparse.Namespace) -> str:
    """``adamw-lr0.001-seed0``, ``alphagrad-lr0.001-alpha2-m0.9-size-aware-seed0``, ..."""
    alphagrad = f"-alpha{args.alpha:g}-m{args.momentum:g}" + "-size-aware" * args.size_aware
    alphagrad += "-adaptive" * args.adaptive
    alphagrad = alphagrad if args.optimizer == "alphagrad" else ""
    sharded = f"-devices{args.devices}" if args.devices > 1 else ""
    return f"{args.optimizer}-lr{args.lr:g}{alphagrad}{sharded}-seed{args.seed}"


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """The arguments of one run (see ``--help``)."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--optimizer", choices=OPTIMIZERS, required=True)
    parser.add_argument("--lr", type=float, required=True, help="peak learning rate")
    parser.add_argument("--steps", type=int, default=400)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--alpha", type=float, default=2.0, help="AlphaGrad's alpha")
    parser.add_argument("--momentum", type=float, default=0.9, help="AlphaGrad's momentum")
    parser.add_argument("--size-aware", action="store_true", help="AlphaGrad: alpha * sqrt(numel) per tensor")
    parser.add_argument("--adaptive", action="store_true", help="AlphaGrad: SaturationTargetAlpha (target 10 %%)")
    parser.add_argument("--width", type=int, default=128)
    parser.add_argument("--layers", type=int, default=4)
    parser.add_argument("--heads", type=int, default=4)
    parser.add_argument("--context", type=int, default=256)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--eval-every", type=int, default=50)
    parser.add_argument("--devices", type=int, default=1, help="CPU processes; > 1 shards the model with FSDP2")
    parser.add_argument("--out", type=Path, default=Path("runs/lm"))
    args = parser.parse_args(argv)
    for name in ("steps", "width", "layers", "heads", "context", "batch", "eval_every", "devices"):
        if getattr(args, name) <= 0:
            parser.error(f"--{name.replace('_', '-')} must be a positive integer, got {getattr(args, name)}")
    return args


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    args = parse_args(argv)
    torch.set_num_threads(1)
    train, validation, corpus = stdlib_corpus()
    model = ByteLM(train, validation, args.optimizer, args.lr, args.steps, width=args.width, layers=args.layers,
                   heads=args.heads, context=args.context, batch=args.batch, eval_every=args.eval_every, seed=args.seed,
                   alpha=args.alpha, momentum=args.momentum, size_aware=args.size_aware,
                   adaptive=args.adaptive, devices=args.devices)  # fmt: skip
    name = run_name(args)
    alphagrad_monitors = (TanhSaturationMonitor(), AlphaMonitor()) if args.optimizer == "alphagrad" else ()
    monitors = [GradNormMonitor(), *alphagrad_monitors]
    sharded = ModelParallelStrategy(data_parallel_size=args.devices, tensor_parallel_size=1)
    strategy = sharded if args.devices > 1 else "auto"
    trainer = L.Trainer(accelerator="cpu", devices=args.devices, strategy=strategy, max_epochs=1,
                        enable_checkpointing=False, enable_progress_bar=False,
                        enable_model_summary=False, log_every_n_steps=args.eval_every, callbacks=monitors,
                        use_distributed_sampler=False,  # the loader yields step indices: every rank takes every step
                        logger=CSVLogger(args.out, name=name, version=""))  # fmt: skip
    began = time.perf_counter()
    trainer.fit(model)
    seconds = time.perf_counter() - began
    parameters = sum(p.numel() for p in model.parameters())
    result = {"name": name, **vars(args), "out": str(args.out), "corpus": corpus, "parameters": parameters,
              "val_bpb": model.curve[-1][1], "curve": model.curve, "seconds": round(seconds, 1),
              "tokens_per_s": args.steps * args.batch * args.context / seconds,
              "state_bytes_per_param": state_bytes_per_parameter(trainer.optimizers, parameters),
              "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}  # fmt: skip
    if trainer.global_rank != 0:
        return result
    (args.out / name).mkdir(parents=True, exist_ok=True)
    (args.out / name / "result.json").write_text(json.dumps(result, indent=1))
    print(f"{name}: validation {result['val_bpb']:.3f} bits/byte, {result['tokens_per_s']:.0f} tokens/s, "
          f"{result['state_bytes_per_param']:.1f} state bytes/parameter", file=sys.stderr)
    return result


if __name__ == "__main__":
    main()
