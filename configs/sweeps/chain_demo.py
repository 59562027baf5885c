"""The offline chain sweep: no intermediate, one stage, and two stages in both orders, ahead of the XCOPA-style and
XNLI-style targets (XTREME-R's two inference tasks, as the study asks).

    python launch/sweep.py run --sweep configs/sweeps/chain_demo.py            # 10 runs of configs/chain_demo.py
    python launch/sweep.py run --sweep configs/sweeps/chain_demo.py --steps 4  # a quick check: 4 steps per phase
    python launch/sweep.py report --sweep configs/sweeps/chain_demo.py         # chain x target tables and heatmap

Each row of the report is a chain (`squad+mnli` trains SQuAD, then MNLI), beside the single stages and the
no-intermediate baseline. Every chain run also writes its own intermediate/chain.md (forgetting across stages).
"""


def get_sweep():
    return dict(
        name="chain_demo",
        recipe="configs/chain_demo.py",
        root="workdir/sweeps/chain_demo",
        intermediate=["none", "squad", "mnli", "squad+mnli", "mnli+squad"],
        targets=["xcopa", "xnli"],
        seeds=[0],
        overrides={"model.name": "{root}/tiny-xlmr"},
    )
