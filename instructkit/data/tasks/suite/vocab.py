"""Word lists the suite generators draw from (also used by the tool-use data and tests)."""

from __future__ import annotations

import random
from typing import Callable

NAMES = ["Alice", "Bob", "Carla", "David", "Emma", "Farid", "Grace", "Hugo", "Irene", "Jonas", "Kira",
         "Liam", "Maya", "Noah", "Olga", "Pablo", "Quinn", "Rosa", "Sven", "Tara", "Umar", "Vera"]
FEMALE = {"Alice", "Carla", "Emma", "Grace", "Irene", "Kira", "Maya", "Olga", "Rosa", "Tara", "Vera"}
# coreference by gender needs names whose gender is unambiguous to a reader (Quinn is not)
WOMEN = sorted(FEMALE | {"Anna", "Sarah", "Laura", "Julia", "Helen", "Mary", "Sophie", "Linda", "Nora"})
MEN = sorted({"Bob", "David", "Hugo", "Jonas", "Liam", "Noah", "Pablo", "Sven", "Umar", "Peter", "James",
              "Thomas", "Mark", "Paul", "George", "Henry", "Oscar", "Victor", "Frank"})
CITIES = ["Paris", "Lima", "Oslo", "Cairo", "Tokyo", "Quito", "Dakar", "Perth", "Seoul", "Turin", "Porto", "Minsk"]
JOBS = ["baker", "nurse", "pilot", "judge", "farmer", "tailor", "chemist", "plumber", "teacher", "painter"]
PETS = ["cat", "dog", "parrot", "rabbit", "turtle", "hamster", "goldfish", "lizard"]
COLORS = ["red", "blue", "green", "yellow", "purple", "orange", "black", "white"]
ITEMS = ["apples", "pencils", "stamps", "marbles", "cookies", "books", "shells", "coins", "stickers"]
WORDS = ["river", "candle", "garden", "pepper", "window", "mirror", "basket", "ladder", "violin", "planet",
         "button", "jacket", "meadow", "anchor", "saddle", "pillow", "dragon", "harbor", "lantern", "copper"]
POS = ["wonderful", "delicious", "friendly", "excellent", "charming", "superb", "delightful", "pleasant"]
NEG = ["dreadful", "tasteless", "unfriendly", "terrible", "annoying", "awful", "disgusting", "unpleasant"]
Row = dict
Gen = Callable[[random.Random], Row]
