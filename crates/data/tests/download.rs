//! The downloader against a throwaway HTTP server on 127.0.0.1 (never any other address):
//! a good file, a corrupt file, a truncated transfer, a 404, an unreachable mirror, mirror
//! fallback, and the CIFAR-10 tarball path (download, verify, extract).

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::TcpListener;
use std::path::Path;

use simclr_data::download::{self, Checksum, Downloader, RemoteFile};
use simclr_data::{cifar10, DataError};

/// What the server answers for a path.
#[derive(Clone)]
enum Reply {
    /// 200 with this body.
    Ok(Vec<u8>),
    /// 200 announcing `announced` bytes but sending only `body`, then closing.
    Truncated { body: Vec<u8>, announced: usize },
    /// 404.
    NotFound,
}

/// Starts a server on 127.0.0.1 (random port) answering `routes`; returns its base URL.
/// The thread lives until the test process ends.
fn serve(routes: HashMap<&'static str, Reply>) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1");
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut s) = stream else { continue };
            let mut req = Vec::new();
            let mut buf = [0u8; 1024];
            while !req.windows(4).any(|w| w == b"\r\n\r\n") {
                match s.read(&mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => req.extend_from_slice(&buf[..n]),
                }
            }
            let line = String::from_utf8_lossy(&req);
            let path = line.split_whitespace().nth(1).unwrap_or("/").to_string();
            let reply = routes
                .get(path.as_str())
                .cloned()
                .unwrap_or(Reply::NotFound);
            let _ = match reply {
                Reply::Ok(body) => s
                    .write_all(
                        format!(
                            "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                            body.len()
                        )
                        .as_bytes(),
                    )
                    .and_then(|_| s.write_all(&body)),
                Reply::Truncated { body, announced } => s
                    .write_all(
                        format!(
                            "HTTP/1.1 200 OK\r\nContent-Length: {announced}\r\nConnection: close\r\n\r\n"
                        )
                        .as_bytes(),
                    )
                    .and_then(|_| s.write_all(&body)),
                Reply::NotFound => s.write_all(
                    b"HTTP/1.1 404 Not Found\r\nContent-Length: 9\r\nConnection: close\r\n\r\nnot found",
                ),
            };
            let _ = s.flush();
        }
    });
    format!("http://{addr}/")
}

/// A 127.0.0.1 URL on which nothing listens.
fn dead_url() -> String {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    drop(l);
    format!("http://{addr}/")
}

fn quiet(mirrors: &[String]) -> Downloader {
    Downloader {
        progress: false,
        timeout: std::time::Duration::from_secs(5),
        ..Downloader::new(mirrors)
    }
}

fn body(n: usize) -> Vec<u8> {
    (0..n).map(|i| (i * 31 % 251) as u8).collect()
}

fn entries(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

#[test]
fn good_file_is_verified_and_renamed_into_place() {
    let data = body(100_000);
    let base = serve(HashMap::from([("/a.gz", Reply::Ok(data.clone()))]));
    let t = tempfile::tempdir().unwrap();
    let dir = t.path().join("mnist");
    let f = RemoteFile::md5("a.gz", &download::md5_hex(&data));
    download::ensure_mnist_files(
        &dir,
        &quiet(std::slice::from_ref(&base)),
        std::slice::from_ref(&f),
    )
    .unwrap();
    assert_eq!(std::fs::read(dir.join("a.gz")).unwrap(), data);
    assert_eq!(entries(&dir), vec!["a.gz"]);
    // SHA-256 works too.
    let sha = RemoteFile {
        name: "a.gz".into(),
        checksum: Checksum::Sha256(download::hex(&sha256(&data))),
    };
    quiet(&[base]).fetch(&sha, &t.path().join("b.gz")).unwrap();
    // Present files are not fetched again (the dead mirror would fail).
    download::ensure_mnist_files(&dir, &quiet(&[dead_url()]), &[f]).unwrap();
}

fn sha256(b: &[u8]) -> Vec<u8> {
    use sha2::Digest;
    sha2::Sha256::digest(b).to_vec()
}

#[test]
fn corrupt_file_is_deleted_and_named_with_its_mirror() {
    let data = body(5000);
    let mut bad = data.clone();
    bad[100] ^= 1;
    let base = serve(HashMap::from([("/a.gz", Reply::Ok(bad))]));
    let t = tempfile::tempdir().unwrap();
    let f = RemoteFile::md5("a.gz", &download::md5_hex(&data));
    match quiet(std::slice::from_ref(&base)).fetch(&f, &t.path().join("a.gz")) {
        Err(DataError::Checksum {
            file,
            mirror,
            expected,
            actual,
            ..
        }) => {
            assert_eq!(file, "a.gz");
            assert_eq!(mirror, base);
            assert_ne!(expected, actual);
        }
        e => panic!("expected a checksum error, got {e:?}"),
    }
    assert!(entries(t.path()).is_empty(), "temp file left behind");
}

#[test]
fn truncated_transfer_is_an_error_and_leaves_nothing() {
    let data = body(10_000);
    let base = serve(HashMap::from([(
        "/a.gz",
        Reply::Truncated {
            body: data[..4000].to_vec(),
            announced: 10_000,
        },
    )]));
    let t = tempfile::tempdir().unwrap();
    let f = RemoteFile::md5("a.gz", &download::md5_hex(&data));
    match quiet(&[base]).fetch(&f, &t.path().join("a.gz")) {
        Err(e @ DataError::Transfer { .. }) => {
            let DataError::Transfer { expected, .. } = &e else {
                unreachable!()
            };
            assert_eq!(*expected, Some(10_000));
            assert!(e.to_string().contains("a.gz"));
        }
        e => panic!("expected a transfer error, got {e:?}"),
    }
    assert!(entries(t.path()).is_empty());
}

#[test]
fn http_404_is_reported_with_the_url() {
    let base = serve(HashMap::new());
    let t = tempfile::tempdir().unwrap();
    let f = RemoteFile::md5("missing.gz", "00");
    match quiet(std::slice::from_ref(&base)).fetch(&f, &t.path().join("missing.gz")) {
        Err(DataError::Http { status, url, .. }) => {
            assert_eq!(status, 404);
            assert_eq!(url, format!("{base}missing.gz"));
        }
        e => panic!("expected HTTP 404, got {e:?}"),
    }
    assert!(entries(t.path()).is_empty());
}

#[test]
fn falls_back_to_the_next_mirror() {
    let data = body(3000);
    let empty = serve(HashMap::new());
    let good = serve(HashMap::from([("/a.gz", Reply::Ok(data.clone()))]));
    let t = tempfile::tempdir().unwrap();
    let f = RemoteFile::md5("a.gz", &download::md5_hex(&data));
    quiet(&[dead_url(), empty, good])
        .fetch(&f, &t.path().join("a.gz"))
        .unwrap();
    assert_eq!(std::fs::read(t.path().join("a.gz")).unwrap(), data);
}

#[test]
fn no_network_lists_every_missing_file_and_where_to_put_it() {
    let t = tempfile::tempdir().unwrap();
    let dir = t.path().join("mnist");
    let err = download::ensure_mnist(&dir, &quiet(&[dead_url()])).unwrap_err();
    match &err {
        DataError::Offline { instructions, .. } => {
            assert_eq!(instructions.len(), 4);
            assert!(instructions[0]
                .contains(&dir.join("train-images-idx3-ubyte.gz").display().to_string()));
            assert!(instructions[3].contains("ec29112dd5afa0611ce80d1b7f02629c"));
        }
        e => panic!("expected Offline, got {e:?}"),
    }
    // Offline, the missing files come first, then what the download attempt said.
    let message = err.to_string();
    assert!(
        message.starts_with("dataset files are not in the data directory"),
        "{message}"
    );
    println!("{err}");
    let cdir = t.path().join(cifar10::DIR);
    match download::ensure_cifar10(&cdir, &quiet(&[dead_url()])) {
        Err(DataError::Offline { instructions, .. }) => {
            assert!(instructions[0].contains("cifar-10-binary.tar.gz"));
            assert!(instructions[1].contains("data_batch_1"));
        }
        e => panic!("expected Offline, got {e:?}"),
    }
}

/// A small CIFAR-10 tarball with the real layout and `per_batch` records per batch.
fn cifar_tarball(per_batch: usize) -> Vec<u8> {
    let gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    let mut tar = tar::Builder::new(gz);
    let mut add = |name: &str, data: &[u8]| {
        let mut h = tar::Header::new_gnu();
        h.set_size(data.len() as u64);
        h.set_mode(0o644);
        h.set_cksum();
        tar.append_data(&mut h, format!("cifar-10-batches-bin/{name}"), data)
            .unwrap();
    };
    for (k, stem) in cifar10::TRAIN_FILES
        .iter()
        .chain(std::iter::once(&cifar10::TEST_FILE))
        .enumerate()
    {
        let mut b = Vec::new();
        for i in 0..per_batch {
            b.push(((i + k) % 10) as u8);
            b.extend_from_slice(&[(k * 10 + i) as u8; cifar10::IMAGE_BYTES]);
        }
        add(&format!("{stem}.bin"), &b);
    }
    add(
        "batches.meta.txt",
        b"airplane\nautomobile\nbird\ncat\ndeer\ndog\nfrog\nhorse\nship\ntruck\n\n",
    );
    add("readme.html", b"<html></html>");
    tar.into_inner().unwrap().finish().unwrap()
}

#[test]
fn cifar_tarball_is_downloaded_verified_and_extracted() {
    let tgz = cifar_tarball(3);
    let base = serve(HashMap::from([(
        "/cifar-10-binary.tar.gz",
        Reply::Ok(tgz.clone()),
    )]));
    let t = tempfile::tempdir().unwrap();
    let dir = t.path().join(cifar10::DIR);
    let tarball = RemoteFile::md5("cifar-10-binary.tar.gz", &download::md5_hex(&tgz));
    download::ensure_cifar10_from(&dir, &quiet(std::slice::from_ref(&base)), &tarball).unwrap();
    assert_eq!(
        entries(t.path()),
        vec![cifar10::DIR.to_string()],
        "tarball not removed"
    );
    assert!(!dir.join("readme.html").exists());
    let (train, test) = cifar10::load_with(&dir, 3).unwrap();
    assert_eq!((train.len(), test.len()), (15, 3));
    assert_eq!(train.images[3 * cifar10::IMAGE_BYTES], 10); // batch 2, record 0
                                                            // The official checksum does not match these bytes: error, nothing extracted.
    let t2 = tempfile::tempdir().unwrap();
    let dir2 = t2.path().join(cifar10::DIR);
    match download::ensure_cifar10(&dir2, &quiet(&[base])) {
        Err(DataError::Checksum { file, .. }) => assert_eq!(file, "cifar-10-binary.tar.gz"),
        e => panic!("expected a checksum error, got {e:?}"),
    }
    assert!(entries(t2.path()).is_empty());
}
