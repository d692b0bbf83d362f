//! Grayscale images: how an image task's answers are shown to a user (block
//! characters in a terminal) and handed to image writers (PNG, in the
//! trainer's `images` module).

/// A grayscale image, row-major, values in [0, 1] (0 = background).
#[derive(Debug, Clone, PartialEq)]
pub struct GrayImage {
    pub width: usize,
    pub height: usize,
    pub pixels: Vec<f32>,
}

/// Shades from background to full ink.
const SHADES: [char; 5] = [' ', '░', '▒', '▓', '█'];

impl GrayImage {
    /// The image as lines of block characters, two per pixel so that it
    /// keeps its aspect ratio in a terminal; framed so that blank rows show.
    pub fn to_blocks(&self) -> String {
        let bar = "─".repeat(2 * self.width);
        let mut out = format!("┌{bar}┐\n");
        for row in self.pixels.chunks(self.width.max(1)).take(self.height) {
            out.push('│');
            for &v in row {
                let level = (v.clamp(0.0, 1.0) * (SHADES.len() - 1) as f32).round() as usize;
                out.push(SHADES[level]);
                out.push(SHADES[level]);
            }
            out.push_str("│\n");
        }
        out.push_str(&format!("└{bar}┘"));
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blocks_map_black_to_space_and_white_to_full() {
        let im = GrayImage {
            width: 2,
            height: 2,
            pixels: vec![0.0, 1.0, 0.5, 2.0],
        };
        let text = im.to_blocks();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines, ["┌────┐", "│  ██│", "│▒▒██│", "└────┘"]);
    }
}
