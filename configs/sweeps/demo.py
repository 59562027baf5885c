"""The offline demo sweep: intermediate none (baseline), SQuAD and MNLI x target TyDiQA-GoldP x seeds 0 and 1.

    python launch/sweep.py run --sweep configs/sweeps/demo.py            # 6 runs of the demo recipe
    python launch/sweep.py run --sweep configs/sweeps/demo.py --steps 4  # a quick check: 4 steps per phase

Shipped data (stilts_jax/assets/demo, written by tools/make_demo_data.py), the tiny model trained from scratch.
SQuAD and TyDiQA come from the demo's XTREME download folder; MNLI from its local copy of the hub repo
nyu-mll/glue (the XTREME download holds no MNLI dev set to select the intermediate model on).
"""

# Paths are relative to the repository root, where runs start (locally, and on hosts after `cd <remote dir>`).
GLUE_COPY = "./stilts_jax/assets/demo/glue"


def get_sweep():
    return dict(
        name="demo",
        recipe="configs/demo.py",
        root="workdir/sweeps/demo",
        intermediate=["none", "squad", "mnli"],
        targets=["tydiqa"],
        seeds=[0, 1],
        # One "pretrained" tiny model for every run of the sweep, as XLM-R is for a real one.
        overrides={"model.name": "{root}/tiny-xlmr"},
        intermediate_overrides={
            "mnli": {"source.kind": "hf", "source.path": "", "source.repo": GLUE_COPY, "max_length": 128},
        },
    )
