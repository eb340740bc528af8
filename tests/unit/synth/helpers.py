import json
from pathlib import Path

SEEDS = [
    ("Give three tips for staying healthy.", "", "Eat well, sleep enough, exercise."),
    ("Classify the sentiment of the sentence.", "I loved this film.", "Positive"),
    ("Translate the sentence into French.", "Good morning.", "Bonjour."),
    ("Write a haiku about autumn leaves falling.", "", "Red leaves drift and fall..."),
    ("Explain why the sky is blue to a child.", "", "Sunlight scatters..."),
    ("Sort these numbers in ascending order.", "5, 2, 9", "2, 5, 9"),
    ("Suggest a name for a coffee shop near the sea.", "", "Tidal Brew"),
    ("Summarize the paragraph in one sentence.", "Cats sleep a lot. They hunt at night.", "Cats sleep by day."),
]


def write_seeds(path: Path, fmt: str = "self_instruct") -> Path:
    with path.open("w") as f:
        for i, (ins, inp, out) in enumerate(SEEDS):
            rec = ({"id": f"seed_{i}", "instruction": ins, "instances": [{"input": inp, "output": out}]}
                   if fmt == "self_instruct" else {"instruction": ins, "input": inp, "output": out})
            f.write(json.dumps(rec) + "\n")
    return path
