"""The PyTorch side of docs/TEXT.md: graft's text recipes, run with sentence-transformers and
Hugging Face transformers on the same split, for the same teacher directory.

- deep: sentence-transformers' embeddings (mean pooling, L2-normalised), then the standard linear
  probe: scikit-learn's multinomial logistic regression, its L2 strength chosen by 5-fold
  cross-validation (the protocol graft's probe follows);
- mid / full: transformers' BertModel with its dropout off (graft trains without dropout), mean
  pooling and L2 normalisation, a new linear head; AdamW (weight decay 1e-4), head at 1e-3,
  encoder at 5e-5, 10% linear warm-up then cosine decay, 3 epochs, batch 32, the last epoch kept;
  `mid` trains the last third of the layers (2 of 6), the embeddings and the rest frozen.

Training on DIR/train.csv, scored on DIR/test.csv; one JSON object per seed on stdout.

    /tmp/st/bin/python scripts/text/reference.py --model MODEL_DIR --set DIR --strategy full --seeds 1
"""
import argparse
import csv
import json
import math
import time

import numpy as np
import torch
import torch.nn as nn


def read(path):
    csv.field_size_limit(1 << 30)  # some e-mails are longer than the csv module's default limit
    with open(path, newline="", encoding="utf-8") as file:
        rows = list(csv.DictReader(file))
    return [row["text"] for row in rows], [row["label"] for row in rows]


def deep(args, train, test, classes, seed):
    from sentence_transformers import SentenceTransformer
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import GridSearchCV, StratifiedKFold

    model = SentenceTransformer(args.model, device="cpu")
    started = time.time()
    train_x = model.encode(train[0], batch_size=32, normalize_embeddings=True)
    test_x = model.encode(test[0], batch_size=32, normalize_embeddings=True)
    encoded = time.time()
    train_y = np.array([classes.index(label) for label in train[1]])
    test_y = np.array([classes.index(label) for label in test[1]])
    grid = {"C": [1.0 / l2 for l2 in 10.0 ** np.arange(1, -5.5, -0.5)]}
    search = GridSearchCV(LogisticRegression(max_iter=2000), grid, cv=StratifiedKFold(5, shuffle=True, random_state=seed), scoring="neg_log_loss")
    search.fit(train_x - train_x.mean(0), train_y)
    accuracy = float((search.predict(test_x - train_x.mean(0)) == test_y).mean())
    return accuracy, {"encode_seconds": encoded - started, "fit_seconds": time.time() - encoded}


class Student(nn.Module):
    def __init__(self, path, classes):
        super().__init__()
        from transformers import AutoModel

        self.bert = AutoModel.from_pretrained(path, hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0, add_pooling_layer=False)
        self.head = nn.Linear(self.bert.config.hidden_size, classes)

    def forward(self, batch):
        hidden = self.bert(**batch).last_hidden_state
        mask = batch["attention_mask"].unsqueeze(-1).float()
        pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
        return self.head(nn.functional.normalize(pooled, p=2, dim=1))


def fine_tune(args, train, test, classes, seed, strategy):
    from transformers import AutoTokenizer

    torch.manual_seed(seed)
    tokenizer = AutoTokenizer.from_pretrained(args.model)
    limit = 256
    model = Student(args.model, len(classes))
    layers = model.bert.config.num_hidden_layers
    cut = 0 if strategy == "full" else layers - math.ceil(layers / 3)
    frozen = [model.bert.embeddings] + list(model.bert.encoder.layer[:cut]) if strategy == "mid" else []
    for module in frozen:
        for parameter in module.parameters():
            parameter.requires_grad = False
    head = list(model.head.parameters())
    encoder = [p for p in model.bert.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW([{"params": encoder, "lr": 5e-5}, {"params": head, "lr": 1e-3}], weight_decay=1e-4, eps=1e-8)
    labels = torch.tensor([classes.index(label) for label in train[1]])
    steps = math.ceil(len(labels) / 32) * args.epochs
    warmup = max(1, round(0.1 * steps))
    schedule = lambda step: (step + 1) / warmup if step < warmup else 0.5 * (1 + math.cos(math.pi * min(1.0, (step - warmup) / max(1, steps - warmup))))
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, schedule)
    started = time.time()
    model.train()
    for _ in range(args.epochs):
        order = torch.randperm(len(labels))
        for start in range(0, len(order), 32):
            rows = order[start:start + 32].tolist()
            batch = tokenizer([train[0][i] for i in rows], padding=True, truncation=True, max_length=limit, return_tensors="pt")
            loss = nn.functional.cross_entropy(model(batch), labels[rows])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            scheduler.step()
    trained = time.time()
    model.eval()
    correct = 0
    with torch.no_grad():
        for start in range(0, len(test[0]), 64):
            batch = tokenizer(test[0][start:start + 64], padding=True, truncation=True, max_length=limit, return_tensors="pt")
            predicted = model(batch).argmax(1)
            correct += sum(int(p) == classes.index(label) for p, label in zip(predicted, test[1][start:start + 64]))
    return correct / len(test[0]), {"train_seconds": trained - started, "peak_rss_mb": peak_rss_mb()}


def peak_rss_mb():
    import resource
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", required=True)
    parser.add_argument("--set", required=True)
    parser.add_argument("--strategy", choices=["deep", "mid", "full"], required=True)
    parser.add_argument("--seeds", type=int, nargs="+", default=[1])
    parser.add_argument("--epochs", type=int, default=3)
    args = parser.parse_args()
    train, test = read(f"{args.set}/train.csv"), read(f"{args.set}/test.csv")
    classes = sorted(set(train[1]))
    for seed in args.seeds:
        started = time.time()
        if args.strategy == "deep":
            accuracy, extra = deep(args, train, test, classes, seed)
        else:
            accuracy, extra = fine_tune(args, train, test, classes, seed, args.strategy)
        print(json.dumps({"tool": "pytorch", "set": args.set.rstrip("/").split("/")[-1], "strategy": args.strategy, "seed": seed,
                          "test_accuracy": accuracy, "seconds": time.time() - started, "threads": torch.get_num_threads(), **extra}), flush=True)


if __name__ == "__main__":
    main()
