"""Movie-review generator of the tiny world: the stand-in for IMDB (Maas et al. 2011).

Invented films (title, genre, lead actor, director, premise) are reviewed in 2-5 sentences: a neutral opening
that names the film (so the first ~30 characters make a sentiment-neutral prompt, as in the RAFT/RRHF IMDB
positive-continuation task), one to three aspect sentences (plot, acting, score, pacing, effects,
cinematography, dialogue, ending) whose polarity follows the label, and an optional verdict. Positive and
negative wording uses words VADER (Hutto & Gilbert 2014) scores strongly ("wonderful", "boring", "awful"), so the
``sentiment`` reward sees the label. Labels and stars: pos = 7-10 stars, neg = 1-4, mixed = 5-6.
"""
from __future__ import annotations

import random

from labcore.tinyworld.dialogues import sentence_case

TITLE_ADJ = ["silent", "broken", "golden", "last", "hidden", "crimson", "lonely", "burning", "frozen", "wild",
             "quiet", "distant", "electric", "forgotten", "midnight", "hollow", "bright", "secret", "final", "wandering",
             "paper", "iron", "velvet", "restless", "shallow"]
TITLE_NOUN = ["harbor", "orchard", "river", "kingdom", "letter", "garden", "engine", "summer", "mountain", "station",
              "lantern", "island", "promise", "shadow", "highway", "winter", "canyon", "theatre", "signal", "circus",
              "compass", "empire", "meadow", "tower", "voyage", "horizon", "mirror", "storm", "bridge", "forest"]
TITLE_PATTERNS = ["the {A} {N}", "{A} {N}", "the {N} of {N2}", "{N} and {N2}", "return to {N}", "the {N}",
                  "a {A} {N}", "{A} {N} {n}", "beyond the {N}", "the {A} {N}s"]
GENRES = ["drama", "comedy", "thriller", "horror film", "romance", "western", "science fiction film", "animated film",
          "documentary", "musical", "war film", "mystery", "fantasy film", "crime film", "family film"]
FIRST = ["anna", "marco", "lena", "david", "sofia", "james", "clara", "tom", "maya", "oliver", "nina", "sam", "elena",
         "hugo", "ruth", "felix", "iris", "leo", "greta", "oscar", "vera", "jonas", "ada", "victor", "lucy", "peter",
         "mila", "arthur", "rosa", "daniel"]
LAST = ["hart", "moreno", "bishop", "kline", "ward", "lindqvist", "okafor", "brennan", "castillo", "dunn", "ferris",
        "galloway", "holm", "ivers", "jansen", "keller", "lowe", "marsh", "novak", "pryce", "quinn", "rowe", "sato",
        "thorne", "underwood", "vance", "whitlock", "yates", "zeller", "abbott"]
HEROES = ["a retired detective", "a lonely baker", "a young sailor", "two estranged sisters", "a small town teacher",
          "a struggling musician", "an old farmer", "a shy student", "a grieving widow", "a runaway teenager",
          "a famous chef", "a tired soldier", "a clumsy inventor", "a stubborn lighthouse keeper", "a travelling nurse"]
GOALS = ["find a missing ring", "save a failing farm", "solve a strange murder", "win back an old love",
         "cross the country on foot", "escape a sinking city", "rebuild a burned theatre", "uncover a family secret",
         "survive one long winter", "stop a corrupt mayor", "reach the top of a mountain", "open a tiny restaurant",
         "protect a hidden village", "find their lost dog", "win a dance contest"]

OPENINGS = [
    "I watched {title} last night.", "{title} is a {genre} starring {actor}.",
    "So I finally saw {title}, the new {genre} from director {director}.",
    "My friends dragged me to {title} on Friday.", "{title} is a {genre} about {hero} who must {goal}.",
    "I rented {title} because I had heard a lot about it.", "Last weekend my family and I watched {title}.",
    "In {title}, {actor} plays {hero} trying to {goal}.", "I went into {title} knowing almost nothing.",
    "{title} tells the story of {hero} who wants to {goal}.", "This {genre}, {title}, came out this year.",
    "We caught a late showing of {title}.", "{actor} leads the cast of {title}, a {genre} by {director}.",
    "I saw {title} at a small festival.", "After all the buzz, I sat down to watch {title}.",
    "{title} follows {hero} who has to {goal}.", "I had been waiting months to see {title}.",
    "Director {director} returns with {title}, a {genre}.",
]
ASPECTS = {
    "plot": ["plot", "story", "script", "storyline"],
    "acting": ["acting", "cast", "performances", "lead performance"],
    "score": ["score", "soundtrack", "music"],
    "pacing": ["pacing", "editing", "second half", "first act"],
    "effects": ["effects", "visuals", "special effects", "costumes"],
    "cinematography": ["camera work", "cinematography", "photography", "lighting"],
    "dialogue": ["dialogue", "jokes", "writing"],
    "ending": ["ending", "finale", "final twist"],
}
POS_ADJ = ["brilliant", "wonderful", "superb", "excellent", "beautiful", "delightful", "charming", "great",
           "amazing", "fantastic", "lovely", "gripping", "fun", "impressive", "perfect"]
NEG_ADJ = ["boring", "awful", "terrible", "dull", "weak", "clumsy", "painful", "lifeless", "bad", "dreadful",
           "horrible", "stupid", "poor", "messy", "annoying"]
INTENS = ["", "", "", "really ", "truly ", "absolutely ", "so ", "pretty ", "genuinely ", "incredibly "]
POS_TEMPLATES = ["the {n} is {i}{adj}.", "I loved the {n}.", "the {n} was {i}{adj} from start to finish.",
                 "the {n} felt {i}{adj}!", "the {n} really works and feels {i}{adj}.", "honestly, the {n} is {i}{adj}.",
                 "the {n} made me smile, it was {adj}.", "I really enjoyed the {adj} {n}."]
NEG_TEMPLATES = ["the {n} is {i}{adj}.", "I hated the {n}.", "the {n} was {i}{adj} from start to finish.",
                 "the {n} felt {i}{adj}.", "the {n} just doesn't work and feels {i}{adj}.", "honestly, the {n} is {i}{adj}.",
                 "the {n} made me cringe, it was {adj}.", "I couldn't stand the {adj} {n}."]
ACTOR_POS = ["{actor} is {adj} as the lead.", "{actor} gives a {i}{adj} performance."]
ACTOR_NEG = ["{actor} is {adj} as the lead.", "{actor} gives a {i}{adj} performance."]
VERDICT = {
    "pos": ["Highly recommended.", "A must-see.", "I'd happily watch it again.", "Easily one of the best {genre}s this year.",
            "Go see it, you will love it.", "A real gem."],
    "neg": ["Skip this one.", "A complete waste of time.", "I want my two hours back.", "Avoid it.",
            "One of the worst {genre}s I have seen.", "Very disappointing."],
    "mixed": ["Worth a look if you like {genre}s, but don't expect much.", "Not bad, not great.",
              "Good in parts, but uneven.", "It has its moments.", "A mixed bag overall.", "Fine for a rainy day."],
}
LABEL_STARS = {"pos": [7, 8, 9, 10], "neg": [1, 2, 3, 4], "mixed": [5, 6]}


def make_films(rng: random.Random, n: int = 600) -> list[dict]:
    """Invent ``n`` films with distinct titles.

    Returns:
        list of {"title", "genre", "actor", "director", "hero", "goal"}.
    """
    films, seen = [], set()
    while len(films) < n:
        title = rng.choice(TITLE_PATTERNS).format(A=rng.choice(TITLE_ADJ), N=rng.choice(TITLE_NOUN),
                                                  N2=rng.choice(TITLE_NOUN), n=rng.choice(["ii", "2", "3"]))
        title = " ".join(w.capitalize() if w not in ("of", "and", "to", "the", "a") or i == 0 else w
                         for i, w in enumerate(title.split()))
        if title in seen or title.lower().split().count(title.lower().split()[-1]) > 1:
            continue
        seen.add(title)
        films.append({"title": title, "genre": rng.choice(GENRES),
                      "actor": f"{rng.choice(FIRST).capitalize()} {rng.choice(LAST).capitalize()}",
                      "director": f"{rng.choice(FIRST).capitalize()} {rng.choice(LAST).capitalize()}",
                      "hero": rng.choice(HEROES), "goal": rng.choice(GOALS)})
    return films


def _aspect_sentence(rng: random.Random, aspect: str, positive: bool, film: dict) -> str:
    adj = rng.choice(POS_ADJ if positive else NEG_ADJ)
    if aspect == "acting" and rng.random() < 0.4:
        tpl = rng.choice(ACTOR_POS if positive else ACTOR_NEG)
    else:
        tpl = rng.choice(POS_TEMPLATES if positive else NEG_TEMPLATES)
    return tpl.format(n=rng.choice(ASPECTS[aspect]), adj=adj, i=rng.choice(INTENS), actor=film["actor"])


def make_review(rng: random.Random, film: dict, label: str) -> dict:
    """One review of ``film`` with the given label ("pos", "neg" or "mixed").

    Returns:
        {"text", "label", "stars", "title", "genre", "actor", "sentences"} where ``sentences`` lists the aspect
        sentences with their polarity (used by the instruction set, not written to reviews.jsonl).
    """
    stars = rng.choice(LABEL_STARS[label])
    opening = rng.choice(OPENINGS).format(title=film["title"], genre=film["genre"], actor=film["actor"],
                                          director=film["director"], hero=film["hero"], goal=film["goal"])
    n_aspects = rng.choice([1, 2, 2, 3]) if label != "mixed" else rng.choice([2, 2, 3])
    aspects = rng.sample(list(ASPECTS), n_aspects)
    if label == "pos":
        pol = [True] * n_aspects
        if stars == 7 and n_aspects > 1 and rng.random() < 0.5:
            pol[-1] = False  # a good film with one flaw
    elif label == "neg":
        pol = [False] * n_aspects
        if stars == 4 and n_aspects > 1 and rng.random() < 0.5:
            pol[-1] = True
    else:
        pol = [True, False] + [rng.random() < 0.5 for _ in range(n_aspects - 2)]
        rng.shuffle(pol)
    sentences = [(_aspect_sentence(rng, a, p, film), p) for a, p in zip(aspects, pol)]
    body = [opening] + [s for s, _ in sentences]
    if len(body) < 5 and rng.random() < 0.6:
        body.append(rng.choice(VERDICT[label]).format(genre=film["genre"]))
    text = " ".join(sentence_case(s) for s in body)
    return {"text": text, "label": label, "stars": stars, "title": film["title"], "genre": film["genre"],
            "actor": film["actor"], "sentences": [(sentence_case(s), p) for s, p in sentences]}


def make_reviews(rng: random.Random, n: int = 6000, n_films: int = 600,
                 label_mix: tuple[float, float, float] = (0.42, 0.42, 0.16)) -> list[dict]:
    """``n`` distinct reviews of ``n_films`` invented films, labels drawn from ``label_mix`` (pos, neg, mixed)."""
    films = make_films(rng, n_films)
    out, seen = [], set()
    while len(out) < n:
        label = rng.choices(["pos", "neg", "mixed"], weights=label_mix)[0]
        rev = make_review(rng, rng.choice(films), label)
        if rev["text"] in seen:
            continue
        seen.add(rev["text"])
        out.append(rev)
    return out


def opening_prompt(text: str, n_chars: int = 30) -> str:
    """First ~``n_chars`` characters of a review, cut back to a word boundary (the RAFT IMDB prompt)."""
    if len(text) <= n_chars:
        return text
    cut = text[:n_chars + 1]
    return cut[:cut.rfind(" ")] if " " in cut else text[:n_chars]
