import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parents[2] / "unit" / "synth"))  # helpers (seed tasks), fake_teacher
