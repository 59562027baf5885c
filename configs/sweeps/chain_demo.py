"""The offline chain sweep: no intermediate, one stage, two stages in both orders, and both tasks together in one
multi-task stage, ahead of the XCOPA-style and XNLI-style targets (XTREME-R's two classification tasks, as the study
asks).

    python launch/sweep.py run --sweep configs/sweeps/chain_demo.py            # 12 runs of configs/chain_demo.py
    python launch/sweep.py run --sweep configs/sweeps/chain_demo.py --steps 4  # a quick check: 4 steps per phase
    python launch/sweep.py report --sweep configs/sweeps/chain_demo.py         # chain x target tables and heatmap

Each row of the report is a chain (`squad+mnli` trains SQuAD, then MNLI; `squad&mnli` trains them together), beside
the single stages and the no-intermediate baseline; the columns are the two targets, the benchmark averages and
XTREME-R's classification average (XNLI and XCOPA). The demo ships 4 of XCOPA's 11 and of XNLI's 15 languages: the
target cells say so (†) and the averages, which need every language, are marked missing with the reason. Every
chain run also writes its own intermediate/chain.md (forgetting across stages).
"""

from stilts_jax.experiments.sweep import chains


def get_sweep():
    return dict(
        name="chain_demo",
        recipe="configs/chain_demo.py",
        root="workdir/sweeps/chain_demo",
        # none, squad, mnli, squad+mnli, mnli+squad, and the multi-task counterpart of the chains
        intermediate=["none", *chains(["squad", "mnli"], lengths=[1, 2]), "squad&mnli"],
        targets=["xcopa", "xnli"],
        seeds=[0],
        overrides={"model.name": "{root}/tiny-xlmr"},
    )
