//! Draws an `otpauth://totp/...` enrollment URI as a QR code made of text,
//! so that a user can scan it from the terminal they are logged in on.
//!
//! The drawing is plain Unicode text: the half-block characters `▀`, `▄`,
//! `█` and the space, with no ANSI colour escapes, so it survives any SSH
//! client, `script` log or PAM conversation that passes text through.
//!
//! Choices made here, and why:
//!
//! - **Two module rows per text line.** A terminal cell is about twice as
//!   tall as it is wide, so a cell split into an upper and a lower half
//!   gives two nearly square modules. The code then takes half as many
//!   lines as it would with one module per line.
//! - **Drawn in negative.** Most SSH sessions show light text on a dark
//!   background. A block character is painted in the text colour and a
//!   space shows the background, so the QR code's *dark* modules are drawn
//!   as spaces and its *light* modules as blocks. On a dark terminal the
//!   code then appears the right way round: dark modules on a light field.
//!   On a light terminal (dark text on white) the code appears as a
//!   negative; the camera apps of current phones read such inverted codes
//!   too, but a strict scanner may not, and the user can then switch the
//!   terminal to a dark theme or copy the secret by hand.
//! - **A quiet zone of 2 modules.** The QR standard asks for 4; phone
//!   scanners read a screen with 2 without trouble, because the contrast of
//!   a screen is high and the zone is drawn in blocks, i.e. light on a dark
//!   terminal, so the dark terminal background never touches the finder
//!   patterns. Each further module of quiet zone would cost a line and two
//!   columns of a terminal that may be only 80×24.
//! - **Error correction L, or M when it costs nothing.** A code on a screen
//!   is not torn or dirty the way a printed label is, so the lowest level
//!   (L, about 7 % of the code may be lost) is enough, and it fits a usual
//!   otpauth URI into a smaller version than M does: fewer modules mean
//!   bigger modules on the phone's camera and fewer terminal lines. When M
//!   happens to give a code of the same size, M is taken for its extra
//!   margin.

use qrcode::{Color, EcLevel, QrCode};
use std::fmt;

/// Modules of light border drawn on every side of the code.
const QUIET_ZONE: usize = 2;

/// The ways drawing a QR code can fail.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum QrError {
    /// The URI holds more bytes than the largest QR code can carry.
    DataTooLong {
        /// Length of the URI in bytes.
        length: usize,
    },
    /// The encoder refused the data for another reason; not expected for
    /// text encoded as bytes, kept so that no encoder error can panic.
    Unencodable,
}

impl fmt::Display for QrError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            QrError::DataTooLong { length } => write!(
                f,
                "the enrollment URI is too long for a QR code ({length} bytes)"
            ),
            QrError::Unencodable => write!(f, "the enrollment URI cannot be encoded as a QR code"),
        }
    }
}

impl std::error::Error for QrError {}

/// Draws `uri` as a QR code in half-block characters, in negative (see the
/// module comment), with a quiet zone of 2 modules.
///
/// Every line has the same number of characters; lines are joined with
/// `"\n"` and there is no newline after the last one.
pub fn render(uri: &str) -> Result<String, QrError> {
    // Encode at the error-correction level that keeps the code smallest.
    let code = encode_smallest(uri.as_bytes())?;

    // Lay the modules out on a field that includes the quiet zone.
    let field = Field::new(&code);

    // Draw two module rows per line of text.
    Ok(draw(&field))
}

/// Encodes `data` at level L, or at level M when that gives the same size.
fn encode_smallest(data: &[u8]) -> Result<QrCode, QrError> {
    let low = encode(data, EcLevel::L)?;

    match encode(data, EcLevel::M) {
        Ok(medium) if medium.width() <= low.width() => Ok(medium),
        _ => Ok(low),
    }
}

/// Encodes `data` at one error-correction level.
fn encode(data: &[u8], level: EcLevel) -> Result<QrCode, QrError> {
    QrCode::with_error_correction_level(data, level).map_err(|error| match error {
        qrcode::types::QrError::DataTooLong => QrError::DataTooLong { length: data.len() },
        _ => QrError::Unencodable,
    })
}

/// The code's modules with the quiet zone around them, as light or dark.
struct Field {
    /// Modules per side, quiet zone included.
    side: usize,
    /// Row by row, `true` for a light module.
    light: Vec<bool>,
}

impl Field {
    /// Places the code's modules in the middle of a light field.
    fn new(code: &QrCode) -> Field {
        let code_side = code.width();
        let side = code_side + 2 * QUIET_ZONE;
        let mut light = vec![true; side * side];

        for (index, color) in code.to_colors().into_iter().enumerate() {
            let x = index % code_side + QUIET_ZONE;
            let y = index / code_side + QUIET_ZONE;
            if let Some(module) = light.get_mut(y * side + x) {
                *module = color == Color::Light;
            }
        }

        Field { side, light }
    }

    /// Whether the module at column `x`, row `y` is light; rows below the
    /// field, which the last line of text may half cover, count as quiet
    /// zone and so as light.
    fn is_light(&self, x: usize, y: usize) -> bool {
        if x >= self.side || y >= self.side {
            return true;
        }
        self.light.get(y * self.side + x).copied().unwrap_or(true)
    }
}

/// Draws the field, one line of text for each pair of module rows.
fn draw(field: &Field) -> String {
    let lines: Vec<String> = (0..field.side)
        .step_by(2)
        .map(|top_row| draw_line(field, top_row))
        .collect();

    lines.join("\n")
}

/// Draws module rows `top_row` and `top_row + 1` as one line of text.
fn draw_line(field: &Field, top_row: usize) -> String {
    (0..field.side)
        .map(|x| half_blocks(field.is_light(x, top_row), field.is_light(x, top_row + 1)))
        .collect()
}

/// The character that paints the light halves of one terminal cell.
fn half_blocks(top_light: bool, bottom_light: bool) -> char {
    match (top_light, bottom_light) {
        (true, true) => '█',
        (true, false) => '▀',
        (false, true) => '▄',
        (false, false) => ' ',
    }
}

#[cfg(test)]
#[path = "../tests/support/qr_decode.rs"]
mod qr_decode;

#[cfg(test)]
mod tests {
    use super::*;

    const URI: &str = "otpauth://totp/otpgate:alice@vms1?secret=JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP\
                       &issuer=otpgate&algorithm=SHA1&digits=6&period=30";

    #[test]
    fn a_rendered_uri_decodes_back_to_the_same_uri() {
        let art = render(URI).expect("a usual otpauth URI fits a QR code");

        assert_eq!(qr_decode::decode(&art).as_deref(), Some(URI));
    }

    #[test]
    fn every_line_has_the_same_width_and_no_newline_ends_the_text() {
        let art = render(URI).expect("a usual otpauth URI fits a QR code");
        let widths: Vec<usize> = art.lines().map(|line| line.chars().count()).collect();

        assert!(widths.iter().all(|&width| width == widths[0]));
        assert_eq!(widths.len(), widths[0].div_ceil(2));
        assert!(!art.ends_with('\n'));
    }

    #[test]
    fn only_half_blocks_and_spaces_are_drawn() {
        let art = render(URI).expect("a usual otpauth URI fits a QR code");

        assert!(art
            .chars()
            .all(|c| matches!(c, '█' | '▀' | '▄' | ' ' | '\n')));
    }

    #[test]
    fn the_quiet_zone_is_drawn_light_and_dark_modules_as_spaces() {
        let art = render(URI).expect("a usual otpauth URI fits a QR code");
        let lines: Vec<&str> = art.lines().collect();

        // The first and last lines are quiet zone only, so all blocks.
        assert!(lines[0].chars().all(|c| c == '█'));
        assert!(lines[lines.len() - 1].chars().all(|c| c == '█'));

        // The top-left finder pattern starts with two dark rows at column 2.
        assert_eq!(lines[1].chars().nth(QUIET_ZONE), Some(' '));
        assert!(lines[1].starts_with("██"));
    }

    #[test]
    fn the_level_is_the_one_that_keeps_the_code_smallest() {
        let code = encode_smallest(URI.as_bytes()).expect("a usual otpauth URI fits a QR code");
        let low = encode(URI.as_bytes(), EcLevel::L).expect("level L fits too");

        assert_eq!(code.width(), low.width());
    }

    #[test]
    fn a_too_long_uri_is_an_error() {
        let uri = format!("otpauth://totp/x?secret={}", "A".repeat(8000));

        let error = render(&uri).expect_err("8000 bytes do not fit a QR code");

        assert_eq!(error, QrError::DataTooLong { length: uri.len() });
        assert!(error.to_string().contains("too long"));
    }

    #[test]
    fn the_same_drawing_in_positive_does_not_decode() {
        let art = render(URI).expect("a usual otpauth URI fits a QR code");
        let positive: String = art
            .chars()
            .map(|c| match c {
                '█' => ' ',
                ' ' => '█',
                '▀' => '▄',
                '▄' => '▀',
                other => other,
            })
            .collect();

        // This shows the decoder reads blocks as light, as a dark terminal
        // shows them, so the round trip above checks the inversion.
        assert_eq!(qr_decode::decode(&positive), None);
    }

    #[test]
    fn an_empty_uri_still_draws() {
        let art = render("").expect("an empty text fits a QR code");

        assert_eq!(qr_decode::decode(&art).as_deref(), Some(""));
    }
}
