//! Photos, before they are stored: their size read, location and camera metadata taken out,
//! the camera's orientation applied to the pixels, and a thumbnail made for the timeline.
//! Decoding is bounded (pixels, memory), runs off the async threads, one at a time per core,
//! and within a time limit; an image that cannot be decoded is kept as a plain file.
//!
//! - JPEG: a photo the camera marked as turned is decoded, turned and encoded again (which
//!   carries no metadata); any other has its EXIF, XMP and IPTC segments (`APP1`, `APP13`)
//!   left out, its pixels untouched.
//! - PNG: `eXIf` and text chunks left out.
//! - WebP: `EXIF` and `XMP ` chunks left out.
//! - GIF: carries no camera metadata; kept as it is.

use std::io::{BufReader, Cursor};
use std::path::Path;

use image::{DynamicImage, ImageDecoder, ImageReader, Limits};

/// Most pixels an image may have (a bigger one is refused: a decompression bomb, or a panorama
/// we will not decode on a small box).
pub const MAX_PIXELS: u64 = 50_000_000;
/// Longest side an image may have, pixels.
pub const MAX_SIDE: u32 = 30_000;
/// Largest side of a thumbnail, pixels.
pub const THUMB_SIDE: u32 = 800;
/// Images smaller than this in bytes and sides need no thumbnail.
const THUMB_BYTES: u64 = 200 * 1024;

/// What processing found and made.
#[derive(Debug, Default)]
pub struct Processed {
    /// Pixels across and down, as shown (after the orientation).
    pub width: u32,
    /// Pixels down.
    pub height: u32,
    /// The bytes to keep instead of the upload's (metadata out, or turned), if they differ.
    pub cleaned: Option<Vec<u8>>,
    /// A smaller copy for the timeline: its bytes, type, width and height.
    pub thumbnail: Option<(Vec<u8>, &'static str, u32, u32)>,
    /// A BlurHash of the picture: shown blurred in its place while it loads.
    pub blurhash: Option<String>,
}

/// Why an image is not processed.
#[derive(Debug)]
pub enum Refused {
    /// Too many pixels: refused outright.
    TooBig(u64),
    /// Not an image we can decode (corrupt, or another type than it says): kept as a file.
    Undecodable(String),
}

/// The image types processed.
pub fn processable(content_type: &str) -> bool {
    matches!(content_type, "image/jpeg" | "image/png" | "image/webp" | "image/gif")
}

/// Reads, cleans and thumbnails the image at `path` (blocking).
pub fn process(path: &Path, content_type: &str) -> Result<Processed, Refused> {
    let bad = |e: &dyn std::fmt::Display| Refused::Undecodable(e.to_string());
    let size = std::fs::metadata(path).map_err(|e| bad(&e))?.len();
    let format = match content_type {
        "image/jpeg" => image::ImageFormat::Jpeg,
        "image/png" => image::ImageFormat::Png,
        "image/webp" => image::ImageFormat::WebP,
        "image/gif" => image::ImageFormat::Gif,
        other => return Err(Refused::Undecodable(format!("{other} is not processed"))),
    };
    let open = || -> Result<_, Refused> {
        let file = std::fs::File::open(path).map_err(|e| bad(&e))?;
        let mut reader = ImageReader::with_format(BufReader::new(file), format);
        let mut limits = Limits::default();
        limits.max_image_width = Some(MAX_SIDE);
        limits.max_image_height = Some(MAX_SIDE);
        limits.max_alloc = Some(MAX_PIXELS * 4 + 64 * 1024 * 1024);
        reader.limits(limits);
        reader.into_decoder().map_err(|e| match e {
            image::ImageError::Limits(_) => Refused::TooBig(u64::from(MAX_SIDE) * u64::from(MAX_SIDE)),
            e => bad(&e),
        })
    };
    let mut decoder = open()?;
    let (w, h) = decoder.dimensions();
    let pixels = u64::from(w) * u64::from(h);
    if pixels > MAX_PIXELS {
        return Err(Refused::TooBig(pixels));
    }
    if w == 0 || h == 0 {
        return Err(Refused::Undecodable("an image without pixels".into()));
    }
    let orientation = decoder.orientation().unwrap_or(image::metadata::Orientation::NoTransforms);
    let turned = orientation != image::metadata::Orientation::NoTransforms && format == image::ImageFormat::Jpeg;
    let swaps = matches!(
        orientation,
        image::metadata::Orientation::Rotate90
            | image::metadata::Orientation::Rotate270
            | image::metadata::Orientation::Rotate90FlipH
            | image::metadata::Orientation::Rotate270FlipH
    );
    let (width, height) = if swaps { (h, w) } else { (w, h) };
    let wants_thumb = size > THUMB_BYTES || width > THUMB_SIDE || height > THUMB_SIDE;
    let mut out = Processed { width, height, ..Default::default() };
    // Decoded in any case (within the limits above): the placeholder needs the pixels.
    let decoded = {
        let mut img = DynamicImage::from_decoder(decoder).map_err(|e| bad(&e))?;
        img.apply_orientation(orientation);
        Some(img)
    };
    out.blurhash = decoded.as_ref().and_then(blurhash_of);
    out.cleaned = if turned {
        // Turned by the camera: the turned pixels, encoded again (no metadata comes along).
        let img = decoded.as_ref().expect("decoded when turned");
        let mut buf = Vec::new();
        let rgb = img.to_rgb8();
        image::codecs::jpeg::JpegEncoder::new_with_quality(&mut buf, 92).encode_image(&rgb).map_err(|e| bad(&e))?;
        Some(buf)
    } else {
        let bytes = std::fs::read(path).map_err(|e| bad(&e))?;
        let stripped = match format {
            image::ImageFormat::Jpeg => strip_jpeg(&bytes),
            image::ImageFormat::Png => strip_png(&bytes),
            image::ImageFormat::WebP => strip_webp(&bytes),
            _ => None,
        };
        stripped.filter(|s| *s != bytes)
    };
    if let (true, Some(img)) = (wants_thumb, decoded.as_ref()) {
        let small = img.thumbnail(THUMB_SIDE, THUMB_SIDE);
        let mut buf = Vec::new();
        let (tw, th) = (small.width(), small.height());
        let ty = if small.color().has_alpha() {
            small.write_to(&mut Cursor::new(&mut buf), image::ImageFormat::Png).map_err(|e| bad(&e))?;
            "image/png"
        } else {
            let rgb = small.to_rgb8();
            image::codecs::jpeg::JpegEncoder::new_with_quality(&mut buf, 80).encode_image(&rgb).map_err(|e| bad(&e))?;
            "image/jpeg"
        };
        out.thumbnail = Some((buf, ty, tw, th));
    }
    Ok(out)
}

/// A BlurHash of `img` (4 by 3 components, 3 by 4 when it stands upright), from a copy of at
/// most 64 pixels a side.
fn blurhash_of(img: &DynamicImage) -> Option<String> {
    let small = img.thumbnail(64, 64).to_rgba8();
    let (x, y) = if small.width() >= small.height() { (4, 3) } else { (3, 4) };
    blurhash::encode(x, y, small.width(), small.height(), small.as_raw()).ok()
}

/// The picture a BlurHash stands for, as a PNG of 8 by 6 pixels (the browser scales it up
/// smoothly: the blur); `None` for a hash that is not well formed. Hashes come from any
/// server: only ASCII of a sane length reaches the decoder (it slices the text by bytes).
pub fn blurhash_png(hash: &str) -> Option<Vec<u8>> {
    if !(6..=100).contains(&hash.len()) || !hash.is_ascii() {
        return None;
    }
    let (w, h) = (8, 6);
    let rgba = blurhash::decode(hash, w, h, 1.0).ok()?;
    let img = image::RgbaImage::from_raw(w, h, rgba)?;
    let mut out = Vec::new();
    DynamicImage::ImageRgba8(img).to_rgb8().write_to(&mut Cursor::new(&mut out), image::ImageFormat::Png).ok()?;
    Some(out)
}

/// A JPEG without its `APP1` (EXIF, XMP) and `APP13` (IPTC) segments; `None` if it is not
/// a JPEG we can walk.
fn strip_jpeg(b: &[u8]) -> Option<Vec<u8>> {
    if b.len() < 4 || b[0] != 0xFF || b[1] != 0xD8 {
        return None;
    }
    let mut out = Vec::with_capacity(b.len());
    out.extend_from_slice(&b[..2]);
    let mut i = 2;
    loop {
        if i + 4 > b.len() || b[i] != 0xFF {
            return None;
        }
        let marker = b[i + 1];
        if marker == 0xFF {
            // Fill byte.
            i += 1;
            continue;
        }
        if marker == 0xDA || marker == 0xD9 {
            // Start of scan (or end): the rest is image data.
            out.extend_from_slice(&b[i..]);
            return Some(out);
        }
        if (0xD0..=0xD7).contains(&marker) || marker == 0x01 {
            out.extend_from_slice(&b[i..i + 2]);
            i += 2;
            continue;
        }
        let len = usize::from(u16::from_be_bytes([b[i + 2], b[i + 3]]));
        if len < 2 || i + 2 + len > b.len() {
            return None;
        }
        if marker != 0xE1 && marker != 0xED {
            out.extend_from_slice(&b[i..i + 2 + len]);
        }
        i += 2 + len;
    }
}

/// A PNG without its `eXIf`, `tEXt`, `zTXt` and `iTXt` chunks.
fn strip_png(b: &[u8]) -> Option<Vec<u8>> {
    const SIG: &[u8] = b"\x89PNG\r\n\x1a\n";
    if !b.starts_with(SIG) {
        return None;
    }
    let mut out = Vec::with_capacity(b.len());
    out.extend_from_slice(SIG);
    let mut i = SIG.len();
    while i + 12 <= b.len() {
        let len = u32::from_be_bytes(b[i..i + 4].try_into().ok()?) as usize;
        let end = i.checked_add(12)?.checked_add(len)?;
        if end > b.len() {
            return None;
        }
        let kind = &b[i + 4..i + 8];
        if !matches!(kind, b"eXIf" | b"tEXt" | b"zTXt" | b"iTXt") {
            out.extend_from_slice(&b[i..end]);
        }
        i = end;
        if kind == b"IEND" {
            return Some(out);
        }
    }
    None
}

/// A WebP without its `EXIF` and `XMP ` chunks (and their flags in `VP8X`).
fn strip_webp(b: &[u8]) -> Option<Vec<u8>> {
    if b.len() < 12 || &b[..4] != b"RIFF" || &b[8..12] != b"WEBP" {
        return None;
    }
    let mut out = Vec::with_capacity(b.len());
    out.extend_from_slice(&b[..12]);
    let mut i = 12;
    while i + 8 <= b.len() {
        let kind = &b[i..i + 4];
        let len = u32::from_le_bytes(b[i + 4..i + 8].try_into().ok()?) as usize;
        let end = i.checked_add(8)?.checked_add(len)?.checked_add(len % 2)?;
        if end > b.len() {
            return None;
        }
        if kind == b"VP8X" && len >= 1 {
            let mut chunk = b[i..end].to_vec();
            chunk[8] &= !(0x08 | 0x04); // the EXIF and XMP flags
            out.extend_from_slice(&chunk);
        } else if kind != b"EXIF" && kind != b"XMP " {
            out.extend_from_slice(&b[i..end]);
        }
        i = end;
    }
    let size = u32::try_from(out.len() - 8).ok()?;
    out[4..8].copy_from_slice(&size.to_le_bytes());
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A JPEG of w×h with an EXIF segment holding `orientation` and a GPS marker text.
    fn jpeg_with_exif(w: u32, h: u32, orientation: u16) -> Vec<u8> {
        let img =
            image::RgbImage::from_fn(
                w,
                h,
                |x, _| if x < w / 2 { image::Rgb([255, 0, 0]) } else { image::Rgb([0, 0, 255]) },
            );
        let mut plain = Vec::new();
        image::codecs::jpeg::JpegEncoder::new_with_quality(&mut plain, 90).encode_image(&img).unwrap();
        // EXIF: big-endian TIFF with one IFD entry (Orientation), then a GPS-looking string.
        let mut tiff = b"MM\x00\x2a\x00\x00\x00\x08\x00\x01".to_vec();
        tiff.extend_from_slice(&[0x01, 0x12, 0x00, 0x03, 0x00, 0x00, 0x00, 0x01]);
        tiff.extend_from_slice(&orientation.to_be_bytes());
        tiff.extend_from_slice(&[0, 0, 0, 0, 0, 0]);
        tiff.extend_from_slice(b"GPS 48.8584N 2.2945E");
        let mut app1 = b"Exif\x00\x00".to_vec();
        app1.extend_from_slice(&tiff);
        let mut out = plain[..2].to_vec();
        out.extend_from_slice(&[0xFF, 0xE1]);
        out.extend_from_slice(&((app1.len() + 2) as u16).to_be_bytes());
        out.extend_from_slice(&app1);
        out.extend_from_slice(&plain[2..]);
        out
    }

    #[test]
    fn gps_leaves_and_a_turned_photo_is_turned() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.jpg");
        std::fs::write(&path, jpeg_with_exif(64, 32, 1)).unwrap();
        let p = process(&path, "image/jpeg").unwrap();
        let cleaned = p.cleaned.expect("metadata taken out");
        assert!(!cleaned.windows(3).any(|w| w == b"GPS"));
        assert_eq!((p.width, p.height), (64, 32));
        // Orientation 6 (turned 90°): stored turned, 32 wide and 64 high, without metadata.
        std::fs::write(&path, jpeg_with_exif(64, 32, 6)).unwrap();
        let p = process(&path, "image/jpeg").unwrap();
        assert_eq!((p.width, p.height), (32, 64));
        let cleaned = p.cleaned.unwrap();
        assert!(!cleaned.windows(4).any(|w| w == b"Exif"));
        let img = image::load_from_memory(&cleaned).unwrap();
        assert_eq!((img.width(), img.height()), (32, 64));
    }

    /// CRC-32 (as PNG chunks carry it).
    fn crc32(bytes: &[u8]) -> u32 {
        let mut c = 0xFFFF_FFFFu32;
        for &b in bytes {
            c ^= u32::from(b);
            for _ in 0..8 {
                c = if c & 1 == 1 { 0xEDB8_8320 ^ (c >> 1) } else { c >> 1 };
            }
        }
        !c
    }

    /// The start of a PNG claiming `w` × `h` pixels (a valid header, no pixels).
    fn png_claiming(w: u32, h: u32) -> Vec<u8> {
        let mut ihdr = b"IHDR".to_vec();
        ihdr.extend_from_slice(&w.to_be_bytes());
        ihdr.extend_from_slice(&h.to_be_bytes());
        ihdr.extend_from_slice(&[8, 2, 0, 0, 0]);
        let mut png = b"\x89PNG\r\n\x1a\n".to_vec();
        png.extend_from_slice(&13u32.to_be_bytes());
        png.extend_from_slice(&ihdr);
        png.extend_from_slice(&crc32(&ihdr).to_be_bytes());
        png
    }

    #[test]
    fn placeholders_come_from_well_formed_hashes_only() {
        let path = std::env::temp_dir().join(format!("chat-blur-{}.png", std::process::id()));
        let img = image::RgbImage::from_fn(120, 90, |x, _| {
            if x < 60 { image::Rgb([250, 10, 10]) } else { image::Rgb([10, 10, 250]) }
        });
        img.save(&path).unwrap();
        let p = process(&path, "image/png").unwrap();
        let _ = std::fs::remove_file(&path);
        let hash = p.blurhash.expect("a blurhash for a small picture too");
        assert_eq!(hash.len(), 4 + 2 * 4 * 3);
        let png = image::load_from_memory(&blurhash_png(&hash).unwrap()).unwrap().to_rgb8();
        assert_eq!(png.dimensions(), (8, 6));
        let (left, right) = (png.get_pixel(0, 3), png.get_pixel(7, 3));
        assert!(left[0] > left[2] && right[2] > right[0], "{left:?} {right:?}");
        // Hashes from other servers: wrong lengths, characters outside base 83, text that is
        // not ASCII (the decoder slices by bytes), all give no placeholder and no panic.
        for bad in [
            "",
            "00000",
            "é0000000",
            "L€AdAqj[00aymkj[TKay9}ay-Sj[",
            "LNAdAqj[00aymkj[TKay9}ay-Sj",
            &"L".repeat(400),
            "LNAdAqj[00aymkj[TKay9}ay-S\\",
        ] {
            assert!(blurhash_png(bad).is_none(), "{bad}");
        }
    }

    #[test]
    fn bombs_and_junk_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("bomb.png");
        // A PNG header claiming 100,000 × 100,000 pixels.
        let png = png_claiming(100_000, 100_000);
        std::fs::write(&path, &png).unwrap();
        assert!(matches!(process(&path, "image/png"), Err(Refused::TooBig(_))));
        std::fs::write(&path, b"<html><script>alert(1)</script>").unwrap();
        assert!(matches!(process(&path, "image/png"), Err(Refused::Undecodable(_))));
    }
}
