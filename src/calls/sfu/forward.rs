//! What the media server does to each forwarded packet, without I/O: which simulcast layer a
//! packet belongs to, whether it starts a VP8 keyframe, and the rewriting (SSRC, sequence
//! number, timestamp, VP8 picture id) that lets one outgoing stream switch between a
//! publisher's layers while the receiver sees one continuous stream.

/// Simulcast layers, lowest first, by the RTP stream id (`rid`) the browser sends them with:
/// quarter, half and full resolution.
pub const RIDS: [&str; 3] = ["q", "h", "f"];

/// Layers of a simulcast publication.
pub const LAYERS: usize = RIDS.len();

/// The layer of a stream id; a stream without one (no simulcast, or audio) is layer 0.
pub fn layer_of(rid: Option<&str>) -> Option<usize> {
    match rid {
        None | Some("") => Some(0),
        Some(r) => RIDS.iter().position(|x| *x == r),
    }
}

/// The layer that suits a tile `height` pixels high (0: the receiver shows none of it).
pub fn layer_for_height(height: u32) -> Option<usize> {
    match height {
        0 => None,
        1..=200 => Some(0),
        201..=400 => Some(1),
        _ => Some(2),
    }
}

/// The VP8 payload descriptor's fields the forwarder reads and rewrites (RFC 7741 §4.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Vp8 {
    /// Start of a partition, partition 0: the packet starts a frame.
    pub starts_frame: bool,
    /// The frame is a keyframe (only meaningful when `starts_frame`).
    pub keyframe: bool,
    /// Offset and width (1 or 2 bytes) of the picture id, if present.
    picture_id: Option<(usize, bool)>,
    /// Offset of TL0PICIDX, if present.
    tl0: Option<usize>,
}

impl Vp8 {
    /// Parses the descriptor at the start of a VP8 RTP payload; `None` when it is cut short.
    pub fn parse(p: &[u8]) -> Option<Vp8> {
        let b0 = *p.first()?;
        let extended = b0 & 0x80 != 0;
        let start = b0 & 0x10 != 0 && b0 & 0x0f == 0;
        let mut at = 1;
        let (mut picture_id, mut tl0) = (None, None);
        if extended {
            let x = *p.get(at)?;
            at += 1;
            if x & 0x80 != 0 {
                let wide = *p.get(at)? & 0x80 != 0;
                picture_id = Some((at, wide));
                at += if wide { 2 } else { 1 };
            }
            if x & 0x40 != 0 {
                p.get(at)?;
                tl0 = Some(at);
                at += 1;
            }
            if x & 0x30 != 0 {
                at += 1;
            }
        }
        // The VP8 payload header's first byte: bit 0 clear is a keyframe (RFC 6386 §9.1).
        let keyframe = start && p.get(at).is_some_and(|h| h & 0x01 == 0);
        Some(Vp8 { starts_frame: start, keyframe, picture_id, tl0 })
    }

    fn picture_id(&self, p: &[u8]) -> Option<u16> {
        let (at, wide) = self.picture_id?;
        Some(if wide { u16::from_be_bytes([p[at] & 0x7f, p[at + 1]]) } else { u16::from(p[at] & 0x7f) })
    }

    fn set_picture_id(&self, p: &mut [u8], id: u16) {
        if let Some((at, wide)) = self.picture_id {
            if wide {
                p[at] = 0x80 | ((id >> 8) as u8 & 0x7f);
                p[at + 1] = id as u8;
            } else {
                p[at] = id as u8 & 0x7f;
            }
        }
    }
}

/// Whether a VP8 payload starts a keyframe.
pub fn vp8_keyframe(payload: &[u8]) -> bool {
    Vp8::parse(payload).is_some_and(|d| d.keyframe)
}

/// A packet's fields as the forwarder sees them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Seen {
    /// RTP sequence number.
    pub seq: u16,
    /// RTP timestamp.
    pub ts: u32,
}

/// Rewrites one publisher's packets (whichever layer is forwarded) into one continuous
/// outgoing stream: after a switch the sequence numbers, timestamps and VP8 picture ids go on
/// from the last ones sent, so the receiver's jitter buffer and decoder see no jump.
#[derive(Debug, Default, Clone)]
pub struct Munger {
    started: bool,
    seq_offset: u16,
    ts_offset: u32,
    pic_offset: u16,
    tl0_offset: u8,
    last: Option<Seen>,
    last_pic: Option<u16>,
    last_tl0: Option<u8>,
    /// Sequence number of the first packet forwarded since the last switch.
    first_in: Option<u16>,
}

/// Timestamp step put between the last packet of one layer and the first of the next (one
/// frame at 30 fps of the 90 kHz video clock).
const SWITCH_TS_STEP: u32 = 3000;

impl Munger {
    /// Starts forwarding another layer (or the first): its next packet continues the stream.
    pub fn switch(&mut self) {
        self.started = false;
        self.first_in = None;
    }

    /// Rewrites a packet of the layer being forwarded in place; `vp8` is its descriptor when the
    /// stream is video. Returns the outgoing sequence number and timestamp, or `None` for a
    /// packet from before the switch (dropped).
    pub fn rewrite(&mut self, seen: Seen, payload: Option<&mut [u8]>) -> Option<Seen> {
        let vp8 = payload.as_deref().and_then(Vp8::parse);
        if !self.started {
            self.started = true;
            match self.last {
                Some(last) => {
                    self.seq_offset = last.seq.wrapping_add(1).wrapping_sub(seen.seq);
                    self.ts_offset = last.ts.wrapping_add(SWITCH_TS_STEP).wrapping_sub(seen.ts);
                }
                None => {
                    self.seq_offset = 0;
                    self.ts_offset = 0;
                }
            }
            if let (Some(d), Some(p)) = (vp8, payload.as_deref()) {
                if let (Some(id), Some(last)) = (d.picture_id(p), self.last_pic) {
                    self.pic_offset = last.wrapping_add(1).wrapping_sub(id) & 0x7fff;
                }
                if let (Some(at), Some(last)) = (d.tl0, self.last_tl0) {
                    self.tl0_offset = last.wrapping_add(1).wrapping_sub(p[at]);
                }
            }
            self.first_in = Some(seen.seq);
        } else if let Some(first) = self.first_in {
            // A packet from before this layer's first forwarded one would land on numbers
            // already used by the previous layer.
            let behind = first.wrapping_sub(seen.seq);
            if behind != 0 && behind < 0x8000 {
                return None;
            }
        }
        let out = Seen { seq: seen.seq.wrapping_add(self.seq_offset), ts: seen.ts.wrapping_add(self.ts_offset) };
        if let (Some(d), Some(p)) = (vp8, payload) {
            if let Some(id) = d.picture_id(p) {
                let id = id.wrapping_add(self.pic_offset) & 0x7fff;
                d.set_picture_id(p, id);
                self.last_pic = Some(self.last_pic.map_or(id, |l| newer15(l, id)));
            }
            if let Some(at) = d.tl0 {
                p[at] = p[at].wrapping_add(self.tl0_offset);
                self.last_tl0 = Some(p[at]);
            }
        }
        self.last = Some(match self.last {
            Some(l) if out.seq.wrapping_sub(l.seq) >= 0x8000 => l,
            _ => out,
        });
        Some(out)
    }
}

/// The later of two 15-bit picture ids.
fn newer15(a: u16, b: u16) -> u16 {
    if b.wrapping_sub(a) & 0x7fff < 0x4000 { b } else { a }
}

/// Audio level from the `ssrc-audio-level` header extension (RFC 6464): 0 is loudest, 127
/// silence; returned as loudness 0–127 (127 loudest).
pub fn loudness(ext: &[u8]) -> Option<u8> {
    ext.first().map(|b| 127 - (b & 0x7f))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A VP8 payload: descriptor with a 15-bit picture id and TL0PICIDX, then a payload header.
    fn vp8(start: bool, key: bool, pic: u16, tl0: u8) -> Vec<u8> {
        let b0 = 0x80 | if start { 0x10 } else { 0 };
        vec![b0, 0xc0, 0x80 | (pic >> 8) as u8, pic as u8, tl0, if key { 0x10 } else { 0x11 }, 0, 0]
    }

    #[test]
    fn keyframes_and_layers_are_told() {
        assert!(vp8_keyframe(&vp8(true, true, 5, 0)));
        assert!(!vp8_keyframe(&vp8(true, false, 5, 0)));
        assert!(!vp8_keyframe(&vp8(false, true, 5, 0)));
        assert!(!vp8_keyframe(&[0x90]));
        assert!(!vp8_keyframe(&[]));
        assert!(vp8_keyframe(&[0x10, 0x00]), "no extension");
        assert_eq!(layer_of(Some("h")), Some(1));
        assert_eq!(layer_of(None), Some(0));
        assert_eq!(layer_of(Some("zz")), None);
        assert_eq!(layer_for_height(0), None);
        assert_eq!(layer_for_height(180), Some(0));
        assert_eq!(layer_for_height(720), Some(2));
    }

    #[test]
    fn a_switch_continues_the_stream() {
        let mut m = Munger::default();
        let mut out = Vec::new();
        // Layer q: seq 100.., ts 9000.., picture id 30..
        for i in 0..3u16 {
            let mut p = vp8(true, i == 0, 30 + i, 7);
            let s = m.rewrite(Seen { seq: 100 + i, ts: 9000 + u32::from(i) * 3000 }, Some(&mut p)).unwrap();
            out.push((s, Vp8::parse(&p).unwrap().picture_id(&p).unwrap(), p[4]));
        }
        assert_eq!(out[2].0, Seen { seq: 102, ts: 15000 });
        // Switch to layer f: seq 5000.., ts 1_000_000.., picture id 9000..
        m.switch();
        let mut p = vp8(true, true, 9000, 200);
        let s = m.rewrite(Seen { seq: 5000, ts: 1_000_000 }, Some(&mut p)).unwrap();
        assert_eq!(s, Seen { seq: 103, ts: 18000 });
        assert_eq!(Vp8::parse(&p).unwrap().picture_id(&p), Some(33));
        assert_eq!(p[4], 8, "TL0PICIDX continues");
        let mut p = vp8(false, false, 9000, 200);
        assert_eq!(m.rewrite(Seen { seq: 5001, ts: 1_000_000 }, Some(&mut p)).unwrap().seq, 104);
        // A late packet of the new layer from before its first forwarded one is dropped.
        let mut p = vp8(false, false, 8999, 199);
        assert_eq!(m.rewrite(Seen { seq: 4999, ts: 997_000 }, Some(&mut p)), None);
        // A late packet after the start (reordering) still maps.
        let mut p = vp8(false, false, 9001, 200);
        assert_eq!(m.rewrite(Seen { seq: 5003, ts: 1_003_000 }, Some(&mut p)).unwrap().seq, 106);
        let mut p = vp8(false, false, 9001, 200);
        assert_eq!(m.rewrite(Seen { seq: 5002, ts: 1_003_000 }, Some(&mut p)).unwrap().seq, 105);
    }

    #[test]
    fn sequence_numbers_wrap() {
        let mut m = Munger::default();
        assert_eq!(m.rewrite(Seen { seq: 65535, ts: u32::MAX }, None).unwrap(), Seen { seq: 65535, ts: u32::MAX });
        assert_eq!(m.rewrite(Seen { seq: 0, ts: 10 }, None).unwrap().seq, 0);
        m.switch();
        assert_eq!(m.rewrite(Seen { seq: 7, ts: 0 }, None).unwrap().seq, 1);
    }

    #[test]
    fn audio_levels_read_as_loudness() {
        assert_eq!(loudness(&[0x80 | 127]), Some(0));
        assert_eq!(loudness(&[0]), Some(127));
        assert_eq!(loudness(&[]), None);
    }
}
