"""Write the SQuAD v2.0, XQuAD and MLQA test fixtures: tests/fixtures/qa/xtreme.

    python tools/make_qa_fixtures.py [--output tests/fixtures/qa/xtreme]

Layouts are those of an XTREME download folder (google-research/xtreme scripts/download_data.sh), with the original
labelled files (XTREME itself blanks the XQuAD and MLQA test answers):
- squad/train-v2.0.json, squad/dev-v2.0.json: SQuAD v2.0 JSON (is_impossible on every question, plausible_answers
  on unanswerable ones, three answers per answerable dev question). English texts written for these tests.
- xquad/xquad.{lang}.json: XQuAD's 12 XTREME-R languages, parallel (the same ids in every language).
- mlqa/MLQA_V1/{dev,test}/{dev,test}-context-{lang}-question-{lang}.json: MLQA's 7 languages.
XQuAD and MLQA contexts are sentences of the shipped parallel text (stilts_jax/assets/text; el, ro and vi, which it
lacks, are translated here); each question is its sentence with the answer blanked out. Answers are years and
numbers (ASCII digits in every language) and a sea's name, which carries articles (en the, de das, ar "ال") and,
in Chinese, no spaces: what MLQA's language-aware normalisation is about. Deterministic.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from stilts_jax.core.tokenization import SHIPPED_TEXT_DIR  # noqa: E402

DEFAULT_OUTPUT = ROOT / "tests" / "fixtures" / "qa" / "xtreme"
XQUAD_LANGUAGES = ("en", "es", "de", "el", "ru", "tr", "ar", "vi", "th", "zh", "hi", "ro")
MLQA_LANGUAGES = ("en", "es", "de", "ar", "hi", "vi", "zh")
BLANK = "___"

# Lines of stilts_jax/assets/text/parallel.{lang}.txt (1-based) used as sentences.
NILE, WATER, EIFFEL, PRINTING, MOON, TELEPHONE, NEWTON, BONES = 1, 3, 4, 15, 28, 35, 61, 64

# Sentences the shipped text has no translation for (el and ro are XQuAD-only, vi is in XQuAD and MLQA).
EXTRA_SENTENCES = {
    "el": {
        NILE: "Ο Νείλος ρέει προς τα βόρεια μέσα από έντεκα χώρες πριν φτάσει στη Μεσόγειο Θάλασσα.",
        EIFFEL: "Ο Πύργος του Άιφελ ολοκληρώθηκε το 1889 για την Παγκόσμια Έκθεση στο Παρίσι.",
        PRINTING: "Η τυπογραφία εφευρέθηκε από τον Ιωάννη Γουτεμβέργιο γύρω στο έτος 1440.",
        MOON: "Ο πρώτος άνθρωπος προσεδαφίστηκε στη Σελήνη τον Ιούλιο του 1969.",
        TELEPHONE: "Το τηλέφωνο κατοχυρώθηκε με δίπλωμα ευρεσιτεχνίας από τον Αλεξάντερ Γκράχαμ Μπελ το 1876.",
        NEWTON: "Ο Ισαάκ Νεύτων περιέγραψε τους νόμους της κίνησης και της παγκόσμιας έλξης το 1687.",
    },
    "ro": {
        NILE: "Nilul curge spre nord prin unsprezece țări înainte de a ajunge în Marea Mediterană.",
        EIFFEL: "Turnul Eiffel a fost finalizat în 1889 pentru Expoziția Universală de la Paris.",
        PRINTING: "Tiparul a fost inventat de Johannes Gutenberg în jurul anului 1440.",
        MOON: "Primul om a aterizat pe Lună în iulie 1969.",
        TELEPHONE: "Telefonul a fost brevetat de Alexander Graham Bell în 1876.",
        NEWTON: "Isaac Newton a descris legile mișcării și gravitația universală în 1687.",
    },
    "vi": {
        NILE: "Sông Nin chảy về phía bắc qua mười một quốc gia trước khi đổ ra biển Địa Trung Hải.",
        WATER: "Nước sôi ở 100 độ C ở mực nước biển.",
        EIFFEL: "Tháp Eiffel được hoàn thành vào năm 1889 cho Hội chợ Thế giới ở Paris.",
        PRINTING: "Máy in được Johannes Gutenberg phát minh vào khoảng năm 1440.",
        MOON: "Con người đầu tiên đặt chân lên Mặt Trăng vào tháng 7 năm 1969.",
        TELEPHONE: "Điện thoại được Alexander Graham Bell cấp bằng sáng chế vào năm 1876.",
        NEWTON: "Isaac Newton đã mô tả các định luật chuyển động và vạn vật hấp dẫn vào năm 1687.",
        BONES: "Bộ xương của một người trưởng thành có 206 chiếc xương.",
    },
}

# The sea the Nile reaches, as its sentence names it in each language.
SEA = {
    "en": "the Mediterranean Sea",
    "es": "mar Mediterráneo",
    "de": "das Mittelmeer",
    "el": "Μεσόγειο Θάλασσα",
    "ru": "Средиземного моря",
    "tr": "Akdeniz",
    "ar": "البحر الأبيض المتوسط",
    "vi": "biển Địa Trung Hải",
    "th": "ทะเลเมดิเตอร์เรเนียน",
    "zh": "地中海",
    "hi": "भूमध्य सागर",
    "ro": "Marea Mediterană",
}
YEARS = {EIFFEL: "1889", PRINTING: "1440", MOON: "1969", TELEPHONE: "1876", NEWTON: "1687", WATER: "100", BONES: "206"}

# Paragraphs: (title, [(question key, sentence line)]); every sentence of a paragraph is asked about.
ARTICLES = {
    "inventions": ("Dates_and_places", [("sea", NILE), ("eiffel", EIFFEL), ("telephone", TELEPHONE)]),
    "science": ("Dates_of_science", [("printing", PRINTING), ("moon", MOON), ("newton", NEWTON)]),
    "numbers": ("Numbers", [("water", WATER), ("bones", BONES)]),
}
XQUAD_ARTICLES = ("inventions", "science")
MLQA_SPLITS = {"dev": ("numbers",), "test": ("inventions", "science")}


def _sentence(language: str, line: int) -> str:
    extra = EXTRA_SENTENCES.get(language, {})
    if line in extra:
        return extra[line]
    return (SHIPPED_TEXT_DIR / f"parallel.{language}.txt").read_text(encoding="utf-8").splitlines()[line - 1]


def _answer(language: str, line: int) -> str:
    return SEA[language] if line == NILE else YEARS[line]


def _qa_id(dataset: str, key: str, length: int) -> str:
    """Hex ids as the datasets use them (XQuAD 24 characters, MLQA 40); the same in every language."""
    return hashlib.sha1(f"{dataset}-fixture-{key}".encode()).hexdigest()[:length]


def _paragraph(dataset: str, language: str, article: str, id_length: int) -> dict:
    sentences = [(key, _sentence(language, line), _answer(language, line)) for key, line in ARTICLES[article][1]]
    separator = "" if language == "zh" else " "  # Chinese text puts no space between sentences
    context = separator.join(sentence for _, sentence, _ in sentences)
    qas = []
    offset = 0
    for key, sentence, answer in sentences:
        if sentence.count(answer) != 1:
            raise ValueError(f"{language} line for {key!r}: answer {answer!r} must occur exactly once in {sentence!r}")
        start = offset + sentence.index(answer)
        assert context[start : start + len(answer)] == answer
        qas.append(
            {
                "answers": [{"answer_start": start, "text": answer}],
                "id": _qa_id(dataset, key, id_length),
                "question": sentence.replace(answer, BLANK),
            }
        )
        offset += len(sentence) + len(separator)
    return {"context": context, "qas": qas}


def xquad_file(language: str) -> dict:
    data = [{"title": ARTICLES[a][0], "paragraphs": [_paragraph("xquad", language, a, 24)]} for a in XQUAD_ARTICLES]
    return {"data": data, "version": "1.0"}


def mlqa_file(language: str, split: str) -> dict:
    data = [{"title": ARTICLES[a][0], "paragraphs": [_paragraph("mlqa", language, a, 40)]} for a in MLQA_SPLITS[split]]
    return {"data": data, "version": "1.0"}


def _squad_v2_question(
    key: str, context: str, question: str, answers: list[str], *, plausible: str | None = None
) -> dict:
    def spans(texts: list[str]) -> list[dict]:
        return [{"text": t, "answer_start": context.index(t)} for t in texts]

    qa = {
        "question": question,
        "id": _qa_id("squad_v2", key, 24),
        "answers": spans(answers),
        "is_impossible": not answers,
    }
    if plausible is not None:
        qa["plausible_answers"] = spans([plausible])
    return qa


def squad_v2_files() -> dict[str, dict]:
    eiffel = (
        "The Eiffel Tower was completed in 1889 for the World's Fair in Paris. It was designed by the "
        "engineering company of Gustave Eiffel and is about 330 metres tall."
    )
    phone = (
        "The telephone was patented by Alexander Graham Bell in 1876. Within a decade, more than 150,000 people "
        "in the United States owned one."
    )
    press = (
        "The printing press was invented by Johannes Gutenberg around the year 1440 in Mainz. His movable type "
        "made books far cheaper to produce."
    )
    moon = "The first human landed on the Moon in July 1969. The Apollo 11 crew returned to Earth eight days later."
    train = [
        (
            "Eiffel_Tower",
            eiffel,
            [
                _squad_v2_question("t1", eiffel, "When was the Eiffel Tower completed?", ["1889"]),
                _squad_v2_question("t2", eiffel, "Whose company designed the Eiffel Tower?", ["Gustave Eiffel"]),
                _squad_v2_question("t3", eiffel, "When was the Eiffel Tower demolished?", [], plausible="1889"),
                _squad_v2_question(
                    "t4", eiffel, "How tall is the Statue of Liberty?", [], plausible="about 330 metres"
                ),
            ],
        ),
        (
            "Telephone",
            phone,
            [
                _squad_v2_question("t5", phone, "Who patented the telephone?", ["Alexander Graham Bell"]),
                _squad_v2_question("t6", phone, "In what year did Bell patent the telephone?", ["1876"]),
                _squad_v2_question("t7", phone, "Who invented the telegraph?", [], plausible="Alexander Graham Bell"),
            ],
        ),
    ]
    dev = [
        (
            "Printing_press",
            press,
            [
                _squad_v2_question(
                    "d1",
                    press,
                    "Who invented the printing press?",
                    ["Johannes Gutenberg", "Johannes Gutenberg", "Gutenberg"],
                ),
                _squad_v2_question(
                    "d2",
                    press,
                    "Around what year was the printing press invented?",
                    ["1440", "around the year 1440", "1440"],
                ),
                _squad_v2_question("d3", press, "Who invented the steam engine?", [], plausible="Johannes Gutenberg"),
                _squad_v2_question("d4", press, "In what city did Gutenberg die?", [], plausible="Mainz"),
            ],
        ),
        (
            "Moon_landing",
            moon,
            [
                _squad_v2_question(
                    "d5", moon, "When did the first human land on the Moon?", ["July 1969", "July 1969", "1969"]
                ),
                _squad_v2_question("d6", moon, "Who was the first human on Mars?", []),
            ],
        ),
    ]

    def squad(articles: list) -> dict:
        return {
            "version": "v2.0",
            "data": [
                {"title": title, "paragraphs": [{"qas": qas, "context": context}]} for title, context, qas in articles
            ],
        }

    return {"squad/train-v2.0.json": squad(train), "squad/dev-v2.0.json": squad(dev)}


def all_files() -> dict[str, dict]:
    """Relative path -> JSON content of every fixture this script writes."""
    files = squad_v2_files()
    files.update({f"xquad/xquad.{lang}.json": xquad_file(lang) for lang in XQUAD_LANGUAGES})
    for split in MLQA_SPLITS:
        files.update(
            {
                f"mlqa/MLQA_V1/{split}/{split}-context-{lang}-question-{lang}.json": mlqa_file(lang, split)
                for lang in MLQA_LANGUAGES
            }
        )
    return files


def write(output: Path) -> list[Path]:
    paths = []
    for relative, content in all_files().items():
        path = output / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(content, ensure_ascii=False, indent=1) + "\n", encoding="utf-8")
        paths.append(path)
    return paths


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--output", type=Path, default=DEFAULT_OUTPUT)
    args = parser.parse_args(argv)
    for path in write(args.output):
        print(path.relative_to(args.output))
    return 0


if __name__ == "__main__":
    sys.exit(main())
