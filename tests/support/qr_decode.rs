//! Reads back a QR code that otpgate drew as text (see `src/qr.rs`), for
//! tests: the unit tests of `src/qr.rs` and the integration tests that see
//! what the PAM module printed both use this one decoder.
//!
//! Include it with `#[path = "support/qr_decode.rs"] mod qr_decode;` from a
//! file in `tests/`.
//!
//! The text is turned back into a picture the way a phone camera would see
//! it on a dark terminal: a block character is light, a space is dark. Each
//! character stands for two modules, one above the other, and every module
//! becomes a square of pixels that `rqrr` then searches for a QR code.

/// Pixels per module side in the picture handed to `rqrr`.
const PIXELS_PER_MODULE: usize = 4;

/// Decodes the first QR code drawn in `art` and returns the text it holds.
///
/// `art` may be the drawing alone or a longer output that contains it: the
/// drawing is taken to be the first run of lines made only of half blocks
/// and spaces. `None` when there is no such run, its lines differ in width,
/// or `rqrr` finds no readable code in it.
pub fn decode(art: &str) -> Option<String> {
    // Find the lines that make up the drawing.
    let lines = drawing_lines(art)?;

    // Turn each character back into its two modules.
    let modules = modules_of(&lines)?;

    // Let rqrr find and read the code in a picture of the modules.
    read_code(&modules)
}

/// The first run of lines made only of half blocks and spaces, as chars.
fn drawing_lines(art: &str) -> Option<Vec<Vec<char>>> {
    let lines: Vec<Vec<char>> = art
        .split('\n')
        .map(|line| line.trim_end_matches('\r'))
        .skip_while(|line| !is_drawing_line(line))
        .take_while(|line| is_drawing_line(line))
        .map(|line| line.chars().collect())
        .collect();

    if lines.is_empty() {
        return None;
    }
    Some(lines)
}

/// Whether `line` could be a line of a drawn code.
fn is_drawing_line(line: &str) -> bool {
    let only_half_blocks = line.chars().all(|c| matches!(c, '█' | '▀' | '▄' | ' '));
    let some_block = line.chars().any(|c| c != ' ');

    only_half_blocks && some_block
}

/// The modules of the drawing, row by row, `true` for a dark module.
fn modules_of(lines: &[Vec<char>]) -> Option<Vec<Vec<bool>>> {
    let width = lines.first()?.len();
    if lines.iter().any(|line| line.len() != width) {
        return None;
    }

    let mut rows = Vec::with_capacity(lines.len() * 2);
    for line in lines {
        rows.push(line.iter().map(|&c| !top_is_light(c)).collect());
        rows.push(line.iter().map(|&c| !bottom_is_light(c)).collect());
    }
    Some(rows)
}

/// Whether the upper half of a drawn character is light.
fn top_is_light(c: char) -> bool {
    matches!(c, '█' | '▀')
}

/// Whether the lower half of a drawn character is light.
fn bottom_is_light(c: char) -> bool {
    matches!(c, '█' | '▄')
}

/// Scales the modules up to pixels and decodes the first code rqrr finds.
fn read_code(modules: &[Vec<bool>]) -> Option<String> {
    let height = modules.len() * PIXELS_PER_MODULE;
    let width = modules.first()?.len() * PIXELS_PER_MODULE;
    let is_dark = |x: usize, y: usize| {
        modules
            .get(y / PIXELS_PER_MODULE)
            .and_then(|row| row.get(x / PIXELS_PER_MODULE))
            .copied()
            .unwrap_or(false)
    };

    let mut picture = rqrr::PreparedImage::prepare_from_bitmap(width, height, is_dark);
    let grids = picture.detect_grids();
    let (_, text) = grids.first()?.decode().ok()?;
    Some(text)
}
