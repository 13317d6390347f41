// `rvec download`: files of a Hugging Face model repository fetched with libcurl into
// the HF cache layout (hub.h), the way huggingface_hub's snapshot_download does it:
// GET {endpoint}/api/models/{repo}/revision/{rev} lists the files and the commit;
// HEAD {endpoint}/{repo}/resolve/{commit}/{file} gives X-Repo-Commit, ETag / X-Linked-Etag
// and X-Linked-Size (LFS files answer with a redirect to their storage); the body goes to
// blobs/<etag>.incomplete (resumed with a Range request after a dropped connection), is
// checked against the size and, for LFS files (64-hex etag), the sha256, then renamed to
// blobs/<etag> and linked from snapshots/<commit>/<file>.
#pragma once
#include <filesystem>
#include <optional>
#include <string>
#include <vector>

namespace rvec::hub {

struct DownloadOptions {
  std::string revision = "main";
  std::vector<std::string> include;   // fnmatch globs over repo paths; empty: every file
  int parallel = 8;                   // files downloaded at once
  int retries = 4;                    // resumed attempts per file after network errors
  bool quiet = false;
  std::optional<std::string> endpoint;  // default $HF_ENDPOINT, else https://huggingface.co
  std::optional<std::string> token;     // default $HF_TOKEN, else the token file
};

// Returns the snapshot directory. Throws rvec::Error naming the repo/file: 401/403 (gated
// or private: set HF_TOKEN), 404 (no such repo, revision or file), network failures,
// checksum mismatches; with HF_HUB_OFFLINE set it refuses to start.
std::filesystem::path download(const std::string& repo, const DownloadOptions& o);

// The token: $HF_TOKEN, else the file $HF_TOKEN_PATH, else $HF_HOME/token, else
// ~/.cache/huggingface/token (first line, trimmed). Empty when none.
std::string default_token();

}  // namespace rvec::hub
