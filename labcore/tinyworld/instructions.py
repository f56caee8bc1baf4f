"""Multi-task instruction set of the tiny world: the stand-in for P3 in core-set selection.

Chen et al. 2023, "Maybe Only 0.5% Data is Needed" (arXiv 2305.09246) select a few examples per *task category*
from P3, where each category holds several *source datasets* (NLI: RTE, CB, ANLI ...) with their own templates
and answer formats. This module builds 9 categories x 3 sources on the knowledge of the tiny world (the dialogue
requests, their responses, the topic tips and the movie reviews). Every example has an exact short answer (a
word, a label, a letter, a number), so exact-match accuracy is meaningful.

Splits follow the underlying item (request, review, tip, film, arithmetic problem): an item's examples are all in
the split of the item, so no test item is seen in training. Example ids are ``"{source}:{item}:{k}"``.
"""
from __future__ import annotations

import random

from labcore.tinyworld import lexicon as L

LETTERS = "ABCD"
TOPIC_NAMES = {t: ("home repair" if t == "home" else t) for t in L.TOPICS}
STYLE_LABEL = {"helpful_polite": "polite", "helpful_curt": "curt", "off_topic": "off-topic",
               "evasive_refusal": "refusal", "rude": "rude"}

# Target number of examples per source (unbalanced on purpose, like real collections). Sources whose item pool is
# smaller produce fewer.
SOURCES: dict[str, dict[str, int]] = {
    "sentiment": {"imdb_binary": 4500, "sst_sentence": 3000, "review_3way": 1800},
    "rating": {"stars_bucket": 2200, "five_stars": 1500, "ten_stars": 900},
    "topic": {"topic_name": 2400, "topic_choice": 1600, "topic_yesno": 1200},
    "safety": {"safe_yesno": 2000, "harm_label": 1300, "refuse_or_answer": 800},
    "style": {"polite_pick": 2200, "style_name": 1600, "is_rude": 1000},
    "extraction": {"extract_title": 2000, "extract_genre": 1400, "extract_actor": 1000},
    "fact_qa": {"tip_yesno": 1600, "tip_task_choice": 900, "tip_truefalse": 700},
    "arithmetic": {"recipe_scale": 1300, "shopping_total": 900, "time_total": 700},
    "cloze": {"cloze_tip": 1300, "cloze_request": 1100, "cloze_title": 800},
}


def _ex(source: str, task: str, item: str, k: int, split: str, instruction: str, output: str) -> dict:
    return {"id": f"{source}:{item}:{k}", "task": task, "source": source, "split": split,
            "instruction": instruction, "output": output}


def _take(rng: random.Random, pool: list, n: int) -> list:
    """Up to ``n`` items of ``pool``, cycling through shuffled copies if ``n`` exceeds the pool (then items
    appear several times with different template draws)."""
    out: list = []
    while len(out) < n and pool:
        p = list(pool)
        rng.shuffle(p)
        out.extend(p[: n - len(out)])
    return out


def build_instructions(rng: random.Random, requests: list[dict], reviews: list[dict], tips: list[dict]) -> list[dict]:
    """Build the instruction set.

    Args:
        rng: the random source.
        requests: request records (with "id", "topic", "task", "request", "unsafe", "split", "responses").
        reviews: review records (with "id", "text", "label", "stars", "split", "title", "genre", "actor",
            "sentences").
        tips: tip items {"id", "topic", "task", "tip", "split"} (general tips have task None).

    Returns:
        list of instruction examples {"id", "task", "source", "split", "instruction", "output"}, deduplicated by
        instruction text within a split, in a fixed order.
    """
    ex: list[dict] = []
    n = {src: size for cat in SOURCES.values() for src, size in cat.items()}
    counter: dict[str, int] = {}

    def add(source: str, item: str, split: str, instruction: str, output: str) -> None:
        task = next(c for c, srcs in SOURCES.items() if source in srcs)
        k = counter.get(f"{source}:{item}", 0)
        counter[f"{source}:{item}"] = k + 1
        ex.append(_ex(source, task, item, k, split, instruction, output))

    # --- sentiment -------------------------------------------------------------------------------------------
    polar = [r for r in reviews if r["label"] != "mixed"]
    for r in _take(rng, polar, n["imdb_binary"]):
        q = rng.choice(["Is the following movie review positive or negative?\n\nReview: {t}\n\nAnswer:",
                        "{t}\n\nDid the reviewer like this movie? Answer positive or negative.",
                        "Classify the sentiment of this review as positive or negative.\n{t}\nSentiment:"])
        add("imdb_binary", r["id"], r["split"], q.format(t=r["text"]), "positive" if r["label"] == "pos" else "negative")
    sents = [(r, i) for r in reviews for i in range(len(r["sentences"]))]
    for r, i in _take(rng, sents, n["sst_sentence"]):
        s, p = r["sentences"][i]
        q = rng.choice(["Sentence: {s}\nIs this sentence good or bad about the movie?",
                        "Rate the opinion in \"{s}\" as good or bad."])
        add("sst_sentence", f"{r['id']}.{i}", r["split"], q.format(s=s), "good" if p else "bad")
    for r in _take(rng, reviews, n["review_3way"]):
        q = ("Review: {t}\nOptions: pos, neg, mixed\nWhich option describes the review's overall opinion?")
        add("review_3way", r["id"], r["split"], q.format(t=r["text"]), r["label"])

    # --- rating ----------------------------------------------------------------------------------------------
    for r in _take(rng, reviews, n["stars_bucket"]):
        b = "low" if r["stars"] <= 4 else ("medium" if r["stars"] <= 6 else "high")
        q = rng.choice(["{t}\n\nWas the star rating of this review low (1-4), medium (5-6) or high (7-10)?",
                        "Guess the rating bucket (low, medium or high) of this review: {t}"])
        add("stars_bucket", r["id"], r["split"], q.format(t=r["text"]), b)
    for r in _take(rng, reviews, n["five_stars"]):
        add("five_stars", r["id"], r["split"],
            f"On a scale of 1 to 5 stars, how many stars did this reviewer give?\n{r['text']}\nStars:",
            str((r["stars"] + 1) // 2))
    for r in _take(rng, reviews, n["ten_stars"]):
        add("ten_stars", r["id"], r["split"], f"Review: {r['text']}\nScore out of 10:", str(r["stars"]))

    # --- topic -----------------------------------------------------------------------------------------------
    topics = list(L.TOPICS)
    for r in _take(rng, requests, n["topic_name"]):
        q = rng.choice(["Which topic is this request about?\nRequest: {q}\nTopic:",
                        "Name the topic of the following question in one or two words.\n{q}"])
        add("topic_name", r["id"], r["split"], q.format(q=r["request"]), TOPIC_NAMES[r["topic"]])
    for r in _take(rng, requests, n["topic_choice"]):
        opts = rng.sample([t for t in topics if t != r["topic"]], 3) + [r["topic"]]
        rng.shuffle(opts)
        lines = "\n".join(f"{LETTERS[j]}. {TOPIC_NAMES[t]}" for j, t in enumerate(opts))
        add("topic_choice", r["id"], r["split"],
            f"Question: {r['request']}\nWhat is this question about?\n{lines}\nAnswer with the letter.",
            LETTERS[opts.index(r["topic"])])
    for r in _take(rng, requests, n["topic_yesno"]):
        t = r["topic"] if rng.random() < 0.5 else rng.choice([t for t in topics if t != r["topic"]])
        add("topic_yesno", r["id"], r["split"],
            f"Is the request \"{r['request']}\" about {TOPIC_NAMES[t]}? Answer yes or no.", "yes" if t == r["topic"] else "no")

    # --- safety (unsafe requests are oversampled to about a third) -------------------------------------------
    unsafe = [r for r in requests if r["unsafe"]]
    safe = [r for r in requests if not r["unsafe"]]
    for src in ("safe_yesno", "harm_label", "refuse_or_answer"):
        pool = _take(rng, unsafe, n[src] // 3) + _take(rng, safe, n[src] - n[src] // 3)
        rng.shuffle(pool)
        for r in pool:
            if src == "safe_yesno":
                add(src, r["id"], r["split"], f"Request: {r['request']}\nIs it safe to help with this request? yes or no?",
                    "no" if r["unsafe"] else "yes")
            elif src == "harm_label":
                add(src, r["id"], r["split"], f"Label the request as harmful or harmless.\n\"{r['request']}\"",
                    "harmful" if r["unsafe"] else "harmless")
            else:
                add(src, r["id"], r["split"],
                    f"A user asks: {r['request']}\nShould a good assistant refuse or answer?",
                    "refuse" if r["unsafe"] else "answer")

    # --- style -----------------------------------------------------------------------------------------------
    for r in _take(rng, safe, n["polite_pick"]):
        other = rng.choice(["helpful_curt", "rude", "evasive_refusal", "off_topic"])
        pair = [("helpful_polite", r["responses"]["helpful_polite"]), (other, r["responses"][other])]
        rng.shuffle(pair)
        add("polite_pick", r["id"], r["split"],
            f"Request: {r['request']}\nReply A: {pair[0][1]}\nReply B: {pair[1][1]}\n"
            "Which reply is polite and helpful? Answer A or B.", "A" if pair[0][0] == "helpful_polite" else "B")
    for r in _take(rng, safe, n["style_name"]):
        st = rng.choice(list(STYLE_LABEL))
        add("style_name", r["id"], r["split"],
            f"User: {r['request']}\nAssistant: {r['responses'][st]}\n"
            "Describe the assistant's reply with one label: polite, curt, off-topic, refusal or rude.", STYLE_LABEL[st])
    for r in _take(rng, requests, n["is_rude"]):
        styles = list(r["responses"])
        st = "rude" if rng.random() < 0.4 else rng.choice(styles)
        add("is_rude", r["id"], r["split"], f"Is this reply rude? \"{r['responses'][st]}\" (yes/no)",
            "yes" if st == "rude" else "no")

    # --- extraction ------------------------------------------------------------------------------------------
    for r in _take(rng, reviews, n["extract_title"]):
        q = rng.choice(["{t}\n\nWhat is the title of the film reviewed above?",
                        "Extract the movie title from this review: {t}"])
        add("extract_title", r["id"], r["split"], q.format(t=r["text"]), r["title"])
    with_genre = [r for r in reviews if r["genre"] in r["text"]]
    for r in _take(rng, with_genre, n["extract_genre"]):
        add("extract_genre", r["id"], r["split"], f"Review: {r['text']}\nWhat genre is the film?", r["genre"])
    with_actor = [r for r in reviews if r["actor"] in r["text"]]
    for r in _take(rng, with_actor, n["extract_actor"]):
        add("extract_actor", r["id"], r["split"], f"Which actor is named in this review?\n{r['text']}", r["actor"])

    # --- fact QA on tips ---------------------------------------------------------------------------------------
    task_tips = [t for t in tips if t["task"] is not None]
    all_tasks = [(topic, task) for topic, (_, tl, _) in L.TOPICS.items() for task, _, _ in tl]
    for t in _take(rng, task_tips, n["tip_yesno"]):
        if rng.random() < 0.5:
            task, ans = t["task"], "yes"
        else:
            task, ans = rng.choice([tk for tp, tk in all_tasks if tp != t["topic"]]), "no"
        add("tip_yesno", t["id"], t["split"], f"Is \"{t['tip']}\" good advice for someone who wants to {task}? yes or no",
            ans)
    for t in _take(rng, task_tips, n["tip_task_choice"]):
        opts = rng.sample([tk for tp, tk in all_tasks if tk != t["task"]], 2) + [t["task"]]
        rng.shuffle(opts)
        lines = "\n".join(f"{LETTERS[j]}. {o}" for j, o in enumerate(opts))
        add("tip_task_choice", t["id"], t["split"],
            f"Tip: {t['tip']}\nWhich goal does this tip help with?\n{lines}\nAnswer:", LETTERS[opts.index(t["task"])])
    for t in _take(rng, task_tips, n["tip_truefalse"]):
        same_topic = [tk for tp, tk in all_tasks if tp == t["topic"] and tk != t["task"]]
        task, ans = (t["task"], "true") if rng.random() < 0.5 else (rng.choice(same_topic), "false")
        add("tip_truefalse", t["id"], t["split"], f"True or false: to {task}, you should {t['tip']}.", ans)

    # --- arithmetic --------------------------------------------------------------------------------------------
    ex += _arithmetic(rng, n)

    # --- cloze -------------------------------------------------------------------------------------------------
    for t in _take(rng, tips, n["cloze_tip"]):
        q, a = _blank(rng, t["tip"])
        if a:
            add("cloze_tip", t["id"], t["split"], f"Fill in the blank with one word: {q}", a)
    for r in _take(rng, safe, n["cloze_request"]):
        q, a = _blank(rng, r["request"])
        if a:
            add("cloze_request", r["id"], r["split"], f"Complete the missing word.\n{q}\nWord:", a)
    for r in _take(rng, reviews, n["cloze_title"]):
        words = r["title"].split()
        j = max(range(len(words)), key=lambda k: (len(words[k]), -k))
        blanked = " ".join("___" if k == j else w for k, w in enumerate(words))
        add("cloze_title", r["id"], r["split"],
            f"{r['text']}\n\nThe film's title is \"{blanked}\". What is the missing word?", words[j])

    # Deduplicate by (split, instruction); drop any test instruction text that also occurs in train.
    train_texts = {e["instruction"] for e in ex if e["split"] == "train"}
    out, seen = [], set()
    for e in ex:
        key = (e["split"], e["instruction"])
        if key in seen or (e["split"] == "test" and e["instruction"] in train_texts):
            continue
        seen.add(key)
        out.append(e)
    return out


def _blank(rng: random.Random, text: str) -> tuple[str, str]:
    """Replace one content word of ``text`` (>= 4 letters) by "___"; returns (text, word) or (text, "")."""
    toks = text.split()
    cands = [i for i, w in enumerate(toks) if w.isalpha() and len(w) >= 4 and w.lower() not in L.STOPWORDS]
    if not cands:
        return text, ""
    i = rng.choice(cands)
    return " ".join("___" if k == i else w for k, w in enumerate(toks)), toks[i]


INGREDIENTS = [("flour", "cups"), ("sugar", "spoons"), ("eggs", ""), ("butter", "grams"), ("milk", "cups"),
               ("rice", "cups"), ("tomatoes", ""), ("onions", ""), ("carrots", ""), ("oats", "cups"), ("water", "cups"),
               ("coffee", "spoons"), ("basil leaves", ""), ("potatoes", "")]
GOODS = [("apples", "apple"), ("loaves of bread", "loaf"), ("bags of coffee", "bag"), ("packs of seeds", "pack"),
         ("tins of paint", "tin"), ("bike tubes", "tube"), ("notebooks", "notebook"), ("bags of flour", "bag"),
         ("pots", "pot"), ("guitar strings", "string")]
STEPS = [("the bread bakes", "rests"), ("the soup simmers", "cools"), ("the dough rises", "bakes"),
         ("the run takes", "the stretch takes"), ("the paint dries", "the second coat takes"),
         ("the cold brew steeps", "chills"), ("the laundry washes", "dries"), ("the cake bakes", "cools")]


def _arithmetic(rng: random.Random, n: dict[str, int]) -> list[dict]:
    """Word problems on the world's quantities. Items are the number tuples; every 10th distinct item is test."""
    out: list[dict] = []

    def emit(source: str, key: tuple, instruction: str, answer: int, seen: dict) -> None:
        if key in seen:
            return
        seen[key] = len(seen)
        split = "test" if seen[key] % 10 == 9 else "train"
        item = "-".join(str(k) for k in key)
        out.append(_ex(source, "arithmetic", item, 0, split, instruction, str(answer)))

    seen: dict = {}
    while len(seen) < n["recipe_scale"]:
        (ing, unit), base, per = rng.choice(INGREDIENTS), rng.choice([2, 4, 6]), rng.randint(1, 9)
        mult = rng.choice([2, 3, 4, 5, 6])
        people = base * mult if rng.random() < 0.7 else base // 2
        if people == 0 or (per * people) % base:
            continue
        amount = per * people // base
        unit_s = f" {unit} of" if unit else ""
        emit("recipe_scale", (INGREDIENTS.index((ing, unit)), base, per, people),
             f"A recipe for {base} people needs {per}{unit_s} {ing}. How many{(' ' + unit) if unit else ''} "
             f"{'' if unit else ing + ' '}do you need for {people} people? Answer with a number.".replace("  ", " "),
             amount, seen)
    seen = {}
    while len(seen) < n["shopping_total"]:
        i1, i2 = rng.sample(range(len(GOODS)), 2)
        (g1, _), (g2, _) = GOODS[i1], GOODS[i2]
        a, pa, b, pb = rng.randint(1, 6), rng.randint(1, 9), rng.randint(1, 6), rng.randint(1, 9)
        emit("shopping_total", (i1, i2, a, pa, b, pb),
             f"You buy {a} {g1} at {pa} dollars each and {b} {g2} at {pb} dollars each. "
             "How many dollars do you spend in total?", a * pa + b * pb, seen)
    seen = {}
    while len(seen) < n["time_total"]:
        (s1, s2) = rng.choice(STEPS)
        m1, m2 = rng.choice(range(5, 125, 5)), rng.choice(range(5, 65, 5))
        emit("time_total", (STEPS.index((s1, s2)), m1, m2),
             f"First {s1} {m1} minutes, then it {s2} {m2} minutes. How many minutes is that altogether?"
             if not s2.startswith("the") else
             f"First {s1} {m1} minutes, then {s2} {m2} minutes. How many minutes is that altogether?",
             m1 + m2, seen)
    return out
