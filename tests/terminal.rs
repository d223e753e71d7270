//! What a user sees in a terminal: the binary runs on a pseudo-terminal (so its progress bars
//! are drawn), and its output is replayed through a small terminal model. Each epoch's line must
//! stand on its own and no half-drawn bar may stay on the screen.

mod common;
use common::*;
use std::io::Read;
use std::os::fd::{FromRawFd, OwnedFd};

/// The screen after replaying `bytes`: printable text, carriage return, line feed, and the
/// control sequences progress bars use (erase line, erase to end of line, cursor up/down);
/// other sequences are skipped.
fn screen(bytes: &[u8]) -> Vec<String> {
    let text = String::from_utf8_lossy(bytes);
    let mut lines: Vec<Vec<char>> = vec![vec![]];
    let (mut row, mut col) = (0usize, 0usize);
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\r' => col = 0,
            '\n' => {
                row += 1;
                col = 0;
                if lines.len() <= row {
                    lines.push(vec![]);
                }
            }
            '\x1b' if chars.peek() == Some(&'[') => {
                chars.next();
                let mut arg = String::new();
                let mut fin = ' ';
                for d in chars.by_ref() {
                    if d.is_ascii_alphabetic() || d == '~' {
                        fin = d;
                        break;
                    }
                    arg.push(d);
                }
                let n: usize = arg.trim_start_matches('?').parse().unwrap_or(1).max(1);
                match (fin, arg.as_str()) {
                    ('K', "2") => lines[row].clear(),
                    ('K', "" | "0") => lines[row].truncate(col),
                    ('A', _) => row = row.saturating_sub(n),
                    ('B', _) => {
                        row += n;
                        while lines.len() <= row {
                            lines.push(vec![]);
                        }
                    }
                    ('G', _) => col = n - 1,
                    _ => {}
                }
            }
            c if !c.is_control() => {
                let line = &mut lines[row];
                while line.len() < col {
                    line.push(' ');
                }
                if col < line.len() {
                    line[col] = c;
                } else {
                    line.push(c);
                }
                col += 1;
            }
            _ => {}
        }
    }
    lines.into_iter().map(|l| l.into_iter().collect::<String>().trim_end().to_string()).collect()
}

/// Runs the binary with stdin, stdout and stderr on a new pseudo-terminal; returns what it
/// wrote there and its exit code.
fn on_a_terminal(dir: &std::path::Path, args: &[&str]) -> (Vec<u8>, i32) {
    let (mut master, mut slave) = (0, 0);
    // SAFETY: openpty writes two new descriptors into the integers given; the others are null.
    let rc = unsafe { libc::openpty(&mut master, &mut slave, std::ptr::null_mut(), std::ptr::null(), std::ptr::null()) };
    assert_eq!(rc, 0, "openpty failed");
    // SAFETY: both descriptors were just opened by openpty and are owned here alone.
    let (master, slave) = unsafe { (OwnedFd::from_raw_fd(master), OwnedFd::from_raw_fd(slave)) };
    let mut child = bin().args(args).current_dir(dir).stdin(slave.try_clone().unwrap()).stdout(slave.try_clone().unwrap()).stderr(slave).spawn().unwrap();
    let mut reader = std::fs::File::from(master);
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    // Reading ends with EIO once the child (the last holder of the terminal) has exited.
    while let Ok(n) = reader.read(&mut buf) {
        if n == 0 {
            break;
        }
        out.extend_from_slice(&buf[..n]);
    }
    let code = child.wait().unwrap().code().unwrap_or(-1);
    (out, code)
}

#[test]
fn epoch_lines_stand_alone_and_no_bar_is_left_behind() {
    let _serial = one_training_at_a_time();
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("r.yaml"), tiny_recipe("[]", "none").replace("epochs: 1", "epochs: 3").replace("train_size: 256", "train_size: 512"))
        .unwrap();
    let (raw, code) = on_a_terminal(dir.path(), &["--recipe", "r.yaml"]);
    assert_eq!(code, 0, "{}", String::from_utf8_lossy(&raw));
    assert!(raw.windows(2).any(|w| w == b"\x1b["), "a terminal gets a drawn progress bar");
    let lines = screen(&raw);
    let epochs: Vec<&String> = lines.iter().filter(|l| l.contains("epoch") && l.contains("loss")).collect();
    assert_eq!(epochs.len(), 3, "{lines:#?}");
    assert!(epochs.iter().all(|l| l.starts_with("distill: epoch ")), "each epoch line starts its own line: {lines:#?}");
    assert!(!lines.iter().any(|l| l.contains("] ") && l.contains('/') && l.contains('[')), "no bar stays on the screen: {lines:#?}");
    assert!(lines.iter().rev().find(|l| !l.is_empty()).unwrap().starts_with("PASS: "), "{lines:#?}");
}
