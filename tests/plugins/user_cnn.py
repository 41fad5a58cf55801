"""A user's own CNN, searched through ``py:user_cnn:small_cnn`` (tests put this folder on PYTHONPATH)."""

from torch import nn


class Block(nn.Module):
    """conv-BN-ReLU-conv-BN plus the input (or a 1x1 projection of it), then ReLU."""

    def __init__(self, cin: int, cout: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.project = None if stride == 1 and cin == cout else nn.Sequential(
            nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))
        self.relu = nn.ReLU()

    def forward(self, x):
        y = self.bn2(self.conv2(self.relu(self.bn1(self.conv1(x)))))
        return self.relu(y + (x if self.project is None else self.project(x)))


class SmallCNN(nn.Module):
    def __init__(self, num_classes: int, in_chans: int, width: int) -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(in_chans, width, 3, 1, 1, bias=False), nn.BatchNorm2d(width), nn.ReLU())
        self.blocks = nn.Sequential(Block(width, width, 1), Block(width, 2 * width, 2), Block(2 * width, 2 * width, 1))
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(2 * width, num_classes)

    def forward(self, x):
        return self.fc(self.pool(self.blocks(self.stem(x))).flatten(1))


def small_cnn(num_classes: int = 10, in_chans: int = 3, width: int = 16) -> nn.Module:
    return SmallCNN(num_classes, in_chans, width)


def not_a_model(num_classes: int = 10):
    return "a string"


def raises(num_classes: int = 10):
    raise RuntimeError("the user's factory failed")


class GatedBlock(nn.Module):
    """A residual block whose branch ends in a tensor function (a learned gate), not a module; the sum and its
    activation are in place: no module makes the branch's end, so ``inside`` and ``parallel`` are not legal."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, 1, 1)
        self.conv2 = nn.Conv2d(channels, channels, 3, 1, 1)
        self.gate = nn.Parameter(nn.init.ones_(torch_empty(channels)))
        self.act = nn.ReLU(inplace=True)

    def forward(self, x):
        y = self.conv2(self.conv(x)) * self.gate.view(1, -1, 1, 1)
        y += x
        return self.act(y)


def torch_empty(n: int):
    import torch

    return torch.empty(n)


class SharedReLUCNN(nn.Module):
    """One ReLU module used after the stem and after the first block: a module called twice is not wrapped."""

    def __init__(self, num_classes: int, in_chans: int) -> None:
        super().__init__()
        self.stem = nn.Conv2d(in_chans, 8, 3, 1, 1)
        self.relu = nn.ReLU()
        self.block = nn.Conv2d(8, 8, 3, 1, 1)
        self.gated = GatedBlock(8)
        self.fc = nn.Linear(8, num_classes)

    def forward(self, x):
        x = self.relu(self.block(self.relu(self.stem(x))))
        return self.fc(self.gated(x).mean((2, 3)))


def shared_relu_cnn(num_classes: int = 10, in_chans: int = 3) -> nn.Module:
    return SharedReLUCNN(num_classes, in_chans)
