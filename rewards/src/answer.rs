//! Where a verifier reads the answer in a completion's text.
//!
//! A released model answers in d1's format, `<reasoning>...</reasoning>
//! <answer>...</answer>`; d1's rewards (`diffu-grpo/reward_func.py`) read
//! the last answer block. A cogrpo-trained model writes the bare answer,
//! which has no tags and is read whole, so the same verifiers score both.

/// The text inside the last `<answer>...</answer>` (to the end when the
/// last block is not closed), or the whole completion when it has no
/// `<answer>` tag.
pub fn answer_text(completion: &str) -> &str {
    let Some(start) = completion.rfind("<answer>") else {
        return completion;
    };
    let inner = &completion[start + "<answer>".len()..];
    inner.find("</answer>").map_or(inner, |end| &inner[..end])
}

#[cfg(test)]
mod tests {
    use super::answer_text;

    #[test]
    fn reads_the_last_answer_block_or_everything() {
        assert_eq!(answer_text("93-(100-30)"), "93-(100-30)");
        assert_eq!(
            answer_text("<reasoning>x</reasoning><answer> 1+2 </answer>"),
            " 1+2 "
        );
        assert_eq!(
            answer_text("<answer>1</answer> then <answer>2</answer>"),
            "2"
        );
        assert_eq!(answer_text("<answer>12"), "12");
        assert_eq!(answer_text(""), "");
    }
}
