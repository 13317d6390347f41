// Hugging Face hub names and the HF cache layout, as huggingface_hub uses them:
//   $HF_HUB_CACHE (else $HF_HOME/hub, else ~/.cache/huggingface/hub)
//     models--ORG--NAME/refs/<branch>              the commit a branch or tag points at
//     models--ORG--NAME/snapshots/<commit>/<file>  relative symlinks into blobs/
//     models--ORG--NAME/blobs/<etag>               the file contents
// A resolved snapshot directory is used in place (no copies).
#pragma once
#include <filesystem>
#include <optional>
#include <string>
#include <string_view>

namespace rvec::hub {

struct RepoRef {
  std::string repo;                 // "ORG/NAME"
  std::string revision = "main";    // branch, tag or commit
};

// "ORG/NAME" or "ORG/NAME@REV" (one slash, HF's allowed characters), else nullopt.
std::optional<RepoRef> parse_repo_id(std::string_view s);

std::filesystem::path cache_dir();
std::filesystem::path repo_cache_dir(const std::string& repo);  // <cache>/models--ORG--NAME
bool offline();  // HF_HUB_OFFLINE set to 1/true/yes/on

// The cached snapshot for a ref: refs/<revision> names the commit, or the revision is
// itself a commit with a snapshot. nullopt when not cached.
std::optional<std::filesystem::path> cached_snapshot(const RepoRef& r);

// Model-name resolver for io::set_model_resolver: a cached snapshot, else (download set and
// not offline) a download of it, else an error naming `rvec download` or `--download`.
std::filesystem::path resolve_model(const std::string& name, bool download);

}  // namespace rvec::hub
