"""VizWiz on official-format files."""


def test_vizwiz_val_and_test(raw, build):
    d = raw.vizwiz()
    r = build("vizwiz", d, "validation")[0]
    assert r["id"] == "VizWiz_val_00000000.jpg" and r["question_id"] == "VizWiz_val_00000000.jpg"
    assert r["instruction"] == "Question: Ok. There is another picture. What is this? Short answer:"
    assert r["target"] == "soda" and len(r["answers"]) == 10 and r["subset"] == "other" and r["role"] == "held_out"
    t = build("vizwiz", d, "test")[0]
    assert t["answers"] == [] and t["target"] == ""
