#!/usr/bin/env python3
"""The PyTorch side of `poisonscope bench train --compare-reference`.

Times the PyTorch reference's training step (shared/reference: SmallCNN, or `--model
preact-resnet18`: BackdoorBench's PreAct-ResNet18 layout, no-bias convolutions; SGD lr 0.01 momentum 0.9
weight decay 5e-4, batch 128, x/255 inputs; SAM as in davda54/sam with rho 0.05, BatchNorm running
statistics frozen in the second pass) on random MNIST-shaped data, and one whole epoch (8000
training images, then evaluation of 2000 test and 1783 triggered images, as the reference's runs
evaluate). Prints one JSON line: images/s of SGD and SAM steps and the epoch's seconds.

    python3 benches/torch_step.py --threads 1 --steps 20
    python3 benches/torch_step.py --model preact-resnet18 --size 32 --channels 3
"""
import argparse
import json
import time

import torch
import torch.nn as nn
import torch.nn.functional as F


class SmallCNN(nn.Module):
    def __init__(self, channels=1, size=28):
        super().__init__()
        self.conv1 = nn.Conv2d(channels, 32, 3, padding=1)
        self.bn1 = nn.BatchNorm2d(32)
        self.conv2 = nn.Conv2d(32, 64, 3, padding=1)
        self.bn2 = nn.BatchNorm2d(64)
        self.fc = nn.Linear(64 * (size // 4) ** 2, 128)
        self.head = nn.Linear(128, 10)

    def forward(self, x):
        x = F.max_pool2d(F.relu(self.bn1(self.conv1(x))), 2)
        x = F.max_pool2d(F.relu(self.bn2(self.conv2(x))), 2)
        return self.head(F.relu(self.fc(x.flatten(1))))


class PreActBlock(nn.Module):
    """BackdoorBench's models/preact_resnet.py PreActBlock."""

    def __init__(self, c_in, c_out, stride):
        super().__init__()
        self.bn1 = nn.BatchNorm2d(c_in)
        self.conv1 = nn.Conv2d(c_in, c_out, 3, stride=stride, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(c_out)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, stride=1, padding=1, bias=False)
        self.shortcut = None
        if stride != 1 or c_in != c_out:
            self.shortcut = nn.Conv2d(c_in, c_out, 1, stride=stride, bias=False)

    def forward(self, x):
        out = F.relu(self.bn1(x))
        shortcut = self.shortcut(out) if self.shortcut is not None else x
        out = self.conv1(out)
        out = self.conv2(F.relu(self.bn2(out)))
        return out + shortcut


class PreActResNet18(nn.Module):
    def __init__(self, channels=3, num_classes=10):
        super().__init__()
        self.conv1 = nn.Conv2d(channels, 64, 3, stride=1, padding=1, bias=False)
        blocks, c_in = [], 64
        for c_out, stride in [(64, 1), (128, 2), (256, 2), (512, 2)]:
            blocks += [PreActBlock(c_in, c_out, stride), PreActBlock(c_out, c_out, 1)]
            c_in = c_out
        self.blocks = nn.Sequential(*blocks)
        self.bn = nn.BatchNorm2d(512)
        self.linear = nn.Linear(512, num_classes)

    def forward(self, x):
        out = F.relu(self.bn(self.blocks(self.conv1(x))))
        out = F.adaptive_avg_pool2d(out, 1).flatten(1)
        return self.linear(out)


SHAPE = (1, 28, 28)
MODEL = "cnn"


def bn_momentum(model, momentum):
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.momentum = momentum


def sgd_step(model, opt, x, y):
    opt.zero_grad(set_to_none=True)
    loss = F.cross_entropy(model(x), y)
    loss.backward()
    opt.step()
    return loss


def sam_step(model, opt, x, y, rho=0.05):
    params = [p for p in model.parameters()]
    opt.zero_grad(set_to_none=True)
    loss = F.cross_entropy(model(x), y)
    loss.backward()
    with torch.no_grad():
        norm = torch.norm(torch.stack([p.grad.norm(2) for p in params]), 2)
        eps = [p.grad * (rho / (norm + 1e-12)) for p in params]
        for p, e in zip(params, eps):
            p.add_(e)
    opt.zero_grad(set_to_none=True)
    bn_momentum(model, 0.0)
    F.cross_entropy(model(x), y).backward()
    bn_momentum(model, 0.1)
    with torch.no_grad():
        for p, e in zip(params, eps):
            p.sub_(e)
    opt.step()
    return loss


def fresh():
    model = SmallCNN(SHAPE[0], SHAPE[1]) if MODEL == "cnn" else PreActResNet18(SHAPE[0])
    model.train()
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, weight_decay=5e-4)
    return model, opt


def images_per_second(step, steps, warmup, batch):
    model, opt = fresh()
    x = torch.rand(batch, *SHAPE)
    y = torch.randint(0, 10, (batch,))
    for _ in range(warmup):
        step(model, opt, x, y)
    start = time.perf_counter()
    for _ in range(steps):
        step(model, opt, x, y)
    return steps * batch / (time.perf_counter() - start)


def epoch_seconds(batch):
    model, opt = fresh()
    train_x = torch.rand(8000, *SHAPE)
    train_y = torch.randint(0, 10, (8000,))
    evaluated = torch.rand(2000 + 1783, *SHAPE)
    start = time.perf_counter()
    for idx in torch.randperm(8000).split(batch):
        sgd_step(model, opt, train_x[idx], train_y[idx])
    model.eval()
    with torch.no_grad():
        for chunk in evaluated.split(256):
            model(chunk).argmax(1)
    return time.perf_counter() - start


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--batch-size", type=int, default=128)
    ap.add_argument("--epoch", action="store_true", help="also time one epoch with evaluation")
    ap.add_argument("--model", choices=["cnn", "preact-resnet18"], default="cnn")
    ap.add_argument("--size", type=int, default=28)
    ap.add_argument("--channels", type=int, default=1)
    ap.add_argument("--sam-first", action="store_true", help="time SAM before SGD (rounds alternate)")
    args = ap.parse_args()
    global SHAPE, MODEL
    SHAPE, MODEL = (args.channels, args.size, args.size), args.model
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    out = {"torch": torch.__version__, "threads": torch.get_num_threads()}
    order = [("sgd", sgd_step), ("sam", sam_step)]
    for name, step in reversed(order) if args.sam_first else order:
        out[f"{name}_images_per_second"] = images_per_second(step, args.steps, args.warmup, args.batch_size)
    if args.epoch:
        out["epoch_seconds"] = epoch_seconds(args.batch_size)
    print(json.dumps(out), flush=True)


if __name__ == "__main__":
    main()
