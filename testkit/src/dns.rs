//! A DNS server on loopback answering the SRV and A records a test gives it (NXDOMAIN for
//! anything else), over UDP, counting the questions it was asked: enough for a server's
//! discovery of another by SRV records without any DNS outside the test.

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex};

use tokio::net::UdpSocket;

/// One record the server answers with.
#[derive(Clone, Debug)]
pub enum Record {
    /// `name SRV priority weight port target`.
    Srv { name: String, priority: u16, weight: u16, port: u16, target: String },
    /// `name A ip`.
    A { name: String, ip: Ipv4Addr },
}

impl Record {
    fn name(&self) -> &str {
        match self {
            Record::Srv { name, .. } | Record::A { name, .. } => name,
        }
    }
    fn qtype(&self) -> u16 {
        match self {
            Record::Srv { .. } => 33,
            Record::A { .. } => 1,
        }
    }
}

/// The running server. Stops when dropped.
pub struct Dns {
    pub addr: SocketAddr,
    records: Arc<Mutex<Vec<Record>>>,
    asked: Arc<Mutex<Vec<(String, u16)>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Dns {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Dns {
    pub async fn start() -> Dns {
        let socket = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let addr = socket.local_addr().unwrap();
        let records: Arc<Mutex<Vec<Record>>> = Arc::default();
        let asked: Arc<Mutex<Vec<(String, u16)>>> = Arc::default();
        let (r, a) = (records.clone(), asked.clone());
        let task = tokio::spawn(async move {
            let mut buf = [0u8; 1500];
            loop {
                let Ok((n, from)) = socket.recv_from(&mut buf).await else { return };
                let Some((name, qtype, question_end)) = question(&buf[..n]) else { continue };
                a.lock().unwrap().push((name.clone(), qtype));
                let answers: Vec<Record> = r
                    .lock()
                    .unwrap()
                    .iter()
                    .filter(|rec| rec.name().eq_ignore_ascii_case(&name) && rec.qtype() == qtype)
                    .cloned()
                    .collect();
                let _ = socket.send_to(&answer(&buf[..question_end], &answers), from).await;
            }
        });
        Dns { addr, records, asked, task }
    }

    /// Answers `record` from now on.
    pub fn add(&self, record: Record) {
        self.records.lock().unwrap().push(record);
    }

    /// How many times `name` was asked for records of `qtype` (33 SRV, 1 A).
    pub fn asked(&self, name: &str, qtype: u16) -> usize {
        self.asked.lock().unwrap().iter().filter(|(n, t)| n.eq_ignore_ascii_case(name) && *t == qtype).count()
    }
}

/// The name (without the final dot), type and end offset of a query's one question.
fn question(msg: &[u8]) -> Option<(String, u16, usize)> {
    if msg.len() < 12 || u16::from_be_bytes([msg[4], msg[5]]) != 1 {
        return None;
    }
    let (mut i, mut labels) = (12, Vec::new());
    loop {
        let len = *msg.get(i)? as usize;
        i += 1;
        if len == 0 {
            break;
        }
        labels.push(String::from_utf8_lossy(msg.get(i..i + len)?).to_string());
        i += len;
    }
    let qtype = u16::from_be_bytes([*msg.get(i)?, *msg.get(i + 1)?]);
    Some((labels.join("."), qtype, i + 4))
}

fn encode_name(out: &mut Vec<u8>, name: &str) {
    for label in name.trim_end_matches('.').split('.').filter(|l| !l.is_empty()) {
        out.push(label.len() as u8);
        out.extend_from_slice(label.as_bytes());
    }
    out.push(0);
}

/// The response to `query` (header and question) with `answers`, NXDOMAIN without any.
fn answer(query: &[u8], answers: &[Record]) -> Vec<u8> {
    let mut out = query.to_vec();
    let rcode = if answers.is_empty() { 3 } else { 0 };
    // QR, opcode 0, AA, RD as asked; RA; the rcode.
    out[2] = 0x84 | (query[2] & 0x01);
    out[3] = 0x80 | rcode;
    out[6..8].copy_from_slice(&(answers.len() as u16).to_be_bytes());
    out[8..12].copy_from_slice(&[0, 0, 0, 0]);
    for rec in answers {
        out.extend_from_slice(&[0xc0, 0x0c]);
        out.extend_from_slice(&rec.qtype().to_be_bytes());
        out.extend_from_slice(&1u16.to_be_bytes());
        out.extend_from_slice(&300u32.to_be_bytes());
        let mut data = Vec::new();
        match rec {
            Record::Srv { priority, weight, port, target, .. } => {
                data.extend_from_slice(&priority.to_be_bytes());
                data.extend_from_slice(&weight.to_be_bytes());
                data.extend_from_slice(&port.to_be_bytes());
                encode_name(&mut data, target);
            }
            Record::A { ip, .. } => data.extend_from_slice(&ip.octets()),
        }
        out.extend_from_slice(&(data.len() as u16).to_be_bytes());
        out.extend_from_slice(&data);
    }
    out
}
