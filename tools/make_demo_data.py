"""Write the offline demo's data: stilts_jax/assets/demo.

    python tools/make_demo_data.py [--output stilts_jax/assets/demo]

SQuAD, TyDiQA-GoldP and the chain demo's XCOPA-style target (stilts_jax/demo/xcopa_data.py) are laid out as an XTREME
download folder (see stilts_jax/demo/qa_data.py); the MNLI set for the
demo sweep's second intermediate task as a local copy of the hub repo nyu-mll/glue (`glue/mnli/*.parquet`, see
stilts_jax/demo/nli_data.py). Deterministic: the files are a function of the shipped parallel sentences.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from stilts_jax.demo.nli_data import write_glue_mnli, write_xnli, write_xnli_translate_train  # noqa: E402
from stilts_jax.demo.qa_data import TYDIQA_LANGUAGES, write_all  # noqa: E402
from stilts_jax.demo.xcopa_data import write_xcopa  # noqa: E402

# The paths google-research/xtreme's scripts/download_data.sh produces.
LAYOUT = {
    "squad_train": "squad/train-v1.1.json",
    "squad_dev": "squad/dev-v1.1.json",
    "tydiqa_train": "tydiqa/tydiqa-goldp-v1.1-train/tydiqa-goldp-v1.1-train.json",
    **{f"tydiqa_dev_{lang}": f"tydiqa/tydiqa-goldp-v1.1-dev/tydiqa.goldp.{lang}.dev.json" for lang in TYDIQA_LANGUAGES},
}
# nyu-mll/glue on the hub: {config}/{split}-NNNNN-of-NNNNN.parquet.
GLUE_LAYOUT = {
    "mnli_train": "glue/mnli/train-00000-of-00001.parquet",
    "mnli_dev": "glue/mnli/validation_matched-00000-of-00001.parquet",
}
DEFAULT_OUTPUT = ROOT / "stilts_jax" / "assets" / "demo"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--output", type=Path, default=DEFAULT_OUTPUT)
    args = parser.parse_args(argv)
    for path in [
        *write_all(args.output, LAYOUT),
        *write_glue_mnli(args.output, GLUE_LAYOUT),
        *write_xcopa(args.output),
        *write_xnli(args.output),
        *write_xnli_translate_train(args.output),
    ]:
        print(path.relative_to(args.output))
    return 0


if __name__ == "__main__":
    sys.exit(main())
