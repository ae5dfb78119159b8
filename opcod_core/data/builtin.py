"""The built-in science questions: generated in code from small fact tables, no files, no network.

Used by the ``tiny`` preset and the tests, so they must be deterministic and small: every question
names one concrete technical concept (an element, a compound, a physical quantity, an organ...) that
the anchoring check can find in the question text, and stays short (a few words of stem plus four
short choices) because tiny models have a context budget of ~64 tokens for the question part.

Each fact becomes three items (three phrasings); the four choices are the right value and three
distractors drawn from the same table, shuffled with a seed derived from the item id (so the gold
label position varies but never changes between runs). ``Item.meta`` carries the concept, the fact
as a sentence and the answer text, so a warm-up can write target hints and tutor feedback.
"""

from __future__ import annotations

import hashlib
import random
from functools import lru_cache
from typing import Iterable

from .records import LETTERS, normalize_domain, slug
from .types import Item

# relation name -> (domain, question phrasings, fact sentence, {concept: answer})
RELATIONS: dict[str, tuple[str, tuple[str, ...], str, dict[str, str]]] = {
    "element_symbol": ("chemistry", (
        "What is the chemical symbol of {c}?",
        "Which symbol stands for the element {c}?",
        "The element {c} has which chemical symbol?",
    ), "The chemical symbol of {c} is {a}.", {
        "hydrogen": "H", "helium": "He", "lithium": "Li", "beryllium": "Be", "boron": "B",
        "carbon": "C", "nitrogen": "N", "oxygen": "O", "fluorine": "F", "neon": "Ne",
        "sodium": "Na", "magnesium": "Mg", "aluminium": "Al", "silicon": "Si", "phosphorus": "P",
        "sulfur": "S", "chlorine": "Cl", "argon": "Ar", "potassium": "K", "calcium": "Ca",
        "iron": "Fe", "copper": "Cu", "zinc": "Zn", "silver": "Ag", "gold": "Au", "tin": "Sn",
        "lead": "Pb", "mercury": "Hg", "iodine": "I", "bromine": "Br", "nickel": "Ni",
        "cobalt": "Co", "manganese": "Mn", "chromium": "Cr", "titanium": "Ti", "uranium": "U",
        "platinum": "Pt", "tungsten": "W",
    }),
    "compound_formula": ("chemistry", (
        "What is the chemical formula of {c}?",
        "Which formula represents {c}?",
        "The compound {c} has which formula?",
    ), "The chemical formula of {c} is {a}.", {
        "water": "H2O", "carbon dioxide": "CO2", "methane": "CH4", "ammonia": "NH3",
        "sodium chloride": "NaCl", "hydrochloric acid": "HCl", "sulfuric acid": "H2SO4",
        "nitric acid": "HNO3", "glucose": "C6H12O6", "ethanol": "C2H5OH", "calcium carbonate": "CaCO3",
        "sodium hydroxide": "NaOH", "ozone": "O3", "hydrogen peroxide": "H2O2", "carbon monoxide": "CO",
        "nitrogen dioxide": "NO2", "sulfur dioxide": "SO2", "propane": "C3H8", "benzene": "C6H6",
        "potassium nitrate": "KNO3",
    }),
    "si_unit": ("physics", (
        "What is the SI unit of {c}?",
        "In SI units, {c} is measured in which unit?",
        "Which SI unit is used for {c}?",
    ), "The SI unit of {c} is the {a}.", {
        "force": "newton", "energy": "joule", "power": "watt", "pressure": "pascal",
        "electric charge": "coulomb", "electric current": "ampere", "voltage": "volt",
        "electrical resistance": "ohm", "frequency": "hertz", "mass": "kilogram", "length": "metre",
        "thermodynamic temperature": "kelvin", "amount of substance": "mole",
        "luminous intensity": "candela", "capacitance": "farad", "inductance": "henry",
        "magnetic flux": "weber", "magnetic flux density": "tesla", "electrical conductance": "siemens",
        "radioactive activity": "becquerel", "absorbed radiation dose": "gray",
        "equivalent radiation dose": "sievert", "plane angle": "radian", "solid angle": "steradian",
        "illuminance": "lux", "luminous flux": "lumen", "catalytic activity": "katal",
        "time": "second",
    }),
    "instrument": ("physics", (
        "What quantity does the {c} measure?",
        "The {c} is an instrument that measures what?",
        "Which quantity is measured with the {c}?",
    ), "The {c} measures {a}.", {
        "ammeter": "electric current", "voltmeter": "voltage", "thermometer": "temperature",
        "barometer": "atmospheric pressure", "odometer": "distance travelled", "speedometer": "speed",
        "anemometer": "wind speed", "hygrometer": "humidity", "seismometer": "ground vibration",
        "ohmmeter": "resistance", "manometer": "gas pressure", "spectrometer": "light spectrum",
        "dosimeter": "radiation dose", "calorimeter": "heat of reaction", "hydrometer": "liquid density",
        "altimeter": "altitude", "tachometer": "rotation rate",
    }),
    "formula": ("physics", (
        "Which equation expresses {c}?",
        "What is the formula for {c}?",
        "In physics, {c} is written as which equation?",
    ), "The formula for {c} is {a}.", {
        "Ohm's law": "V = IR", "Newton's second law": "F = ma", "kinetic energy": "E = mv^2/2",
        "gravitational potential energy": "E = mgh", "momentum": "p = mv", "density": "rho = m/V",
        "wave speed": "v = f*lambda", "electrical power": "P = VI", "mechanical work": "W = Fd",
        "mass-energy equivalence": "E = mc^2", "weight": "W = mg", "Hooke's law": "F = -kx",
        "electric charge flow": "Q = It",
    }),
    "organelle": ("biology", (
        "What is the main function of the {c}?",
        "In a cell, the {c} is responsible for what?",
        "Which role does the {c} play in the cell?",
    ), "The {c} is responsible for: {a}.", {
        "nucleus": "storing the DNA", "mitochondrion": "producing ATP", "ribosome": "making proteins",
        "chloroplast": "photosynthesis", "Golgi apparatus": "packaging proteins",
        "lysosome": "digesting waste", "cell membrane": "controlling what enters",
        "cell wall": "rigid support", "vacuole": "storing water", "endoplasmic reticulum": "transporting proteins",
        "centriole": "organising the spindle", "cytoskeleton": "maintaining cell shape",
    }),
    "organ_system": ("biology", (
        "The {c} belongs to which organ system?",
        "Which organ system includes the {c}?",
        "In humans, the {c} is part of which system?",
    ), "The {c} is part of the {a}.", {
        "heart": "circulatory system", "lungs": "respiratory system", "stomach": "digestive system",
        "brain": "nervous system", "kidney": "urinary system", "skin": "integumentary system",
        "femur": "skeletal system", "biceps": "muscular system", "thyroid": "endocrine system",
        "spleen": "lymphatic system", "ovary": "reproductive system", "trachea": "respiratory system",
        "small intestine": "digestive system", "spinal cord": "nervous system", "bladder": "urinary system",
        "liver": "digestive system", "aorta": "circulatory system", "skull": "skeletal system",
    }),
    "hormone_gland": ("biology", (
        "Which gland secretes {c}?",
        "The hormone {c} is produced by which gland?",
        "{C} is released mainly by which gland?",
    ), "{C} is secreted by the {a}.", {
        "insulin": "pancreas", "glucagon": "pancreas", "adrenaline": "adrenal gland",
        "cortisol": "adrenal gland", "thyroxine": "thyroid gland", "melatonin": "pineal gland",
        "growth hormone": "pituitary gland", "prolactin": "pituitary gland", "estrogen": "ovary",
        "testosterone": "testis", "parathyroid hormone": "parathyroid gland",
    }),
    "vitamin_deficiency": ("biology", (
        "A lack of {c} causes which disease?",
        "Which disease results from {c} deficiency?",
        "Deficiency of {c} leads to which condition?",
    ), "A lack of {c} causes {a}.", {
        "vitamin C": "scurvy", "vitamin D": "rickets", "vitamin B1": "beriberi", "vitamin B3": "pellagra",
        "vitamin A": "night blindness", "vitamin B12": "pernicious anaemia", "iodine": "goitre",
        "vitamin K": "poor blood clotting", "iron": "iron-deficiency anaemia",
    }),
}

BUILTIN_DOMAINS: tuple[str, ...] = tuple(dict.fromkeys(r[0] for r in RELATIONS.values()))
N_CHOICES = 4


def _fill(template: str, concept: str, answer: str = "") -> str:
    cap = concept[:1].upper() + concept[1:]
    return template.format(c=concept, C=cap, a=answer)


def _rng(key: str) -> random.Random:
    return random.Random(int.from_bytes(hashlib.sha256(key.encode("utf-8")).digest()[:8], "big"))


@lru_cache(maxsize=None)
def _all_items() -> tuple[Item, ...]:
    items: list[Item] = []
    for relation, (domain, phrasings, fact_tpl, table) in RELATIONS.items():
        values = sorted(set(table.values()))
        for concept, answer in table.items():
            others = [v for v in values if v != answer]
            fact = _fill(fact_tpl, concept, answer)
            for k, phrasing in enumerate(phrasings):
                item_id = f"builtin-{domain}-{relation}-{slug(concept)}-q{k}"
                rng = _rng(item_id)
                choices = [answer] + rng.sample(others, N_CHOICES - 1)
                rng.shuffle(choices)
                labels = LETTERS[:N_CHOICES]
                items.append(Item(
                    id=item_id, domain=domain, question=_fill(phrasing, concept), choices=tuple(choices),
                    labels=labels, gold=labels[choices.index(answer)], answer_type="mcq",
                    meta={"source": "builtin", "concept": concept, "fact": fact, "answer_text": answer,
                          "relation": relation}))
    return tuple(items)


def builtin_items(domains: Iterable[str] = ()) -> list[Item]:
    """All built-in items, or those of ``domains``; an unknown domain is an error."""
    want = [normalize_domain(d) for d in domains]
    unknown = [d for d in want if d not in BUILTIN_DOMAINS]
    if unknown:
        raise ValueError(f"unknown built-in domain(s) {unknown}; available: {list(BUILTIN_DOMAINS)}")
    # fresh meta dicts: callers may annotate items without touching the cached originals
    return [Item.from_dict(it.to_dict()) for it in _all_items() if not want or it.domain in want]


def builtin_corpus() -> list[str]:
    """Every text the built-in set can produce (questions, choice texts, concepts, facts), sorted and
    de-duplicated: enough to train a tokenizer that covers the whole built-in set."""
    texts: set[str] = set()
    for relation, (domain, phrasings, fact_tpl, table) in RELATIONS.items():
        texts.add(domain)
        for concept, answer in table.items():
            texts.update((concept, answer, _fill(fact_tpl, concept, answer)))
            texts.update(_fill(p, concept) for p in phrasings)
    return sorted(texts)
