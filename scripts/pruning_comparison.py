"""The pruning comparison: ``python scripts/pruning_comparison.py --dataset cifar10 --output-dir O``.

Same flags as ``tfxai prune`` (``--data-dir D`` or ``--dataset cifar10``, ``--modes``,
``--sparsities``, ``--epochs``, ``--image-size``, ``--full`` ...).
"""
import sys

from tfxai.cli import main

if __name__ == "__main__":
    sys.exit(main(["prune", *sys.argv[1:]]))
