"""quantlab's tokenizer (the `tokenizers` library alone) against transformers' fast tokenizer on the same folder."""

from __future__ import annotations

from quantlab import manifest
from quantlab.runtime.tokenizer import Tokenizer
from quantlab.texts import default_calibration_texts, default_eval_text


def test_same_ids_and_text_as_transformers(tiny_artifacts, english_text):
    from transformers import AutoTokenizer

    folder = tiny_artifacts / manifest.TOKENIZER_DIR
    ours, theirs = Tokenizer(folder), AutoTokenizer.from_pretrained(str(folder))
    texts = [default_eval_text(), *default_calibration_texts()[:8], english_text, "",
             " two  spaces\n\n\ttab <start_of_turn>user\nhi<end_of_turn>\n<eos> ünïcødé 🙂 1234567"]
    for text in texts:
        ids = ours.encode(text)
        assert ids == theirs(text, add_special_tokens=False).input_ids, text[:60]
        with_bos = [theirs.bos_token_id, *ids]
        for skip in (False, True):
            assert ours.decode(with_bos, skip) == theirs.decode(with_bos, skip_special_tokens=skip), (text[:60], skip)
    assert ours.chat_template == (getattr(theirs, "chat_template", None) or None)
