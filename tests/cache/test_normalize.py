from core.cache.normalize import embedding_key, entry_id_for, make_namespace, normalize_query


def test_normalize_trims_lowercases_and_collapses_whitespace() -> None:
    assert normalize_query("  What IS\tthe\n\n VPN  address? ") == "what is the vpn address?"


def test_normalize_applies_nfkc() -> None:
    # full-width letters, the "ﬁ" ligature and a no-break space become plain text
    assert normalize_query("Ｗｈａｔ ﬁle\u00a0size") == "what file size"


def test_embedding_key_is_stable_and_model_specific() -> None:
    a = embedding_key("all-MiniLM-L6-v2", "What is X?")
    assert a == embedding_key("all-MiniLM-L6-v2", "  what is   x? ")
    assert a != embedding_key("other-model", "What is X?")
    assert len(a) == 64


def test_embedding_key_separates_model_and_query() -> None:
    assert embedding_key("ab", "c") != embedding_key("a", "bc")


def test_entry_id_is_scoped_by_namespace() -> None:
    ns1, ns2 = make_namespace(1, "m", "p1"), make_namespace(2, "m", "p1")
    assert entry_id_for(ns1, "Q?") == entry_id_for(ns1, " q? ")
    assert entry_id_for(ns1, "Q?") != entry_id_for(ns2, "Q?")
