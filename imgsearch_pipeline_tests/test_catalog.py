import json

import pytest

from imgsearch_pipeline.catalog import KeyPattern, parse_feed


def test_jsonl_feed():
    data = "\n".join(json.dumps(r) for r in [
        {"product_id": "p1", "name": "Tee", "brand": "Acme", "department": "men", "image_keys": ["a/1.jpg", "a/2.jpg"]},
        {"product_id": "p2", "image_keys": []},
    ]).encode()
    cat = parse_feed(data, "feed.jsonl")
    assert set(cat.products) == {"p1", "p2"} and cat.products["p1"].brand == "Acme"
    assert cat.key_to_product == {"a/1.jpg": "p1", "a/2.jpg": "p1"} and cat.errors == []


def test_csv_feed_with_pipe_or_json_keys_and_optional_columns():
    data = (b"product_id,name,brand,shop_category,image_keys\n"
            b"p1,Red dress,Zeta,Dresses,x/1.jpg|x/2.jpg\n"
            b'p2,,,,"[""y/1.jpg""]"\n')
    cat = parse_feed(data, "feed.csv")
    assert cat.products["p1"].shop_category == "Dresses" and cat.products["p2"].name is None
    assert cat.key_to_product == {"x/1.jpg": "p1", "x/2.jpg": "p1", "y/1.jpg": "p2"}


def test_bad_rows_are_reported_not_dropped_silently():
    data = b'{"product_id": "ok"}\nnot json\n{"name": "no id"}\n'
    cat = parse_feed(data, "feed.jsonl")
    assert list(cat.products) == ["ok"]
    assert len(cat.errors) == 2 and cat.errors[0].startswith("feed.jsonl:2:")


def test_key_pattern():
    default = KeyPattern()
    assert default.product_id("catalog/women/dress/sku1/1.jpg") == "sku1"
    assert default.product_id("lonely.jpg") is None
    custom = KeyPattern(r"images/(?P<product_id>\d+)_\d+\.jpg")
    assert custom.product_id("images/123_4.jpg") == "123" and custom.product_id("images/x_4.jpg") is None
    with pytest.raises(ValueError, match="product_id"):
        KeyPattern(r"(\d+)")
