#include "io/safetensors_writer.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <nlohmann/json.hpp>

#include "core/atomic_output.h"
#include "core/error.h"

namespace fs = std::filesystem;
using nlohmann::json;

namespace rvec::io {

uint64_t TensorSpec::numel() const {
  uint64_t n = 1;
  for (int64_t d : shape) n *= uint64_t(d);
  return n;
}

std::string safetensors_header(const std::vector<TensorSpec>& tensors, const std::map<std::string, std::string>& metadata) {
  json h = json::object();
  h["__metadata__"] = {{"format", "pt"}};
  for (const auto& [k, v] : metadata) h["__metadata__"][k] = v;
  uint64_t off = 0;
  for (const auto& t : tensors) {
    uint64_t n = t.nbytes();
    h[t.name] = {{"dtype", std::string(dtype_name(t.dtype))}, {"shape", t.shape}, {"data_offsets", {off, off + n}}};
    off += n;
  }
  std::string js = h.dump();
  while ((8 + js.size()) % 8 != 0) js.push_back(' ');
  std::string out(8, '\0');
  uint64_t len = js.size();
  for (int i = 0; i < 8; ++i) out[size_t(i)] = char((len >> (8 * i)) & 0xff);
  return out + js;
}

SafetensorsWriter::SafetensorsWriter(const fs::path& dir, std::vector<TensorSpec> tensors, uint64_t shard_size,
                                     Mode mode, std::map<std::string, std::string> metadata)
    : dir_(dir), tensors_(std::move(tensors)), metadata_(std::move(metadata)), buf_(size_t(8) << 20), sync_(mode == Mode::Synchronous) {
  if (shard_size == 0) fail("shard size must be positive");
  {
    std::map<std::string, int> seen;
    for (const auto& t : tensors_)
      if (seen[t.name]++) fail("{}: duplicate output tensor name '{}'", dir.string(), t.name);
  }
  uint64_t cur_bytes = 0;
  for (size_t i = 0; i < tensors_.size(); ++i) {
    uint64_t n = tensors_[i].nbytes();
    if (shards_.empty() || (cur_bytes > 0 && cur_bytes + n > shard_size)) {
      shards_.emplace_back();
      cur_bytes = 0;
    }
    shards_.back().push_back(i);
    shard_of_.push_back(shards_.size() - 1);
    cur_bytes += n;
    total_ += n;
  }
  if (shards_.empty()) shards_.emplace_back();
  const size_t k = shards_.size();
  for (size_t s = 0; s < k; ++s)
    files_.push_back(k == 1 ? std::string("model.safetensors")
                            : fmt::format("model-{:05d}-of-{:05d}.safetensors", s + 1, k));
  for (size_t i = 0; i < tensors_.size(); ++i) weight_map_[tensors_[i].name] = files_[shard_of_[i]];
  open_shard(0);
  // Skip over zero-byte tensors at the start.
  while (cur_ < tensors_.size() && tensors_[cur_].nbytes() == 0) {
    ++cur_;
    if (cur_ < tensors_.size() && shard_of_[cur_] != open_shard_) open_shard(shard_of_[cur_]);
  }
}

SafetensorsWriter::~SafetensorsWriter() {
  stop_thread();
  if (fd_ >= 0) ::close(fd_);
}

namespace {
constexpr size_t kBufBytes = size_t(8) << 20;
constexpr size_t kMaxQueued = 3;
constexpr size_t kDirectBytes = size_t(64) << 10;  // synchronous mode: written without a copy
}  // namespace

void SafetensorsWriter::stop_thread() {
  if (!th_.joinable()) return;
  {
    std::lock_guard<std::mutex> l(mu_);
    q_.push_back({IoJob::Close, 0, {}});
    stop_ = true;
  }
  cv_.notify_all();
  th_.join();
}

void SafetensorsWriter::check_error() {
  std::lock_guard<std::mutex> l(mu_);
  if (err_) {
    auto e = err_;
    err_ = nullptr;
    std::rethrow_exception(e);
  }
}

void SafetensorsWriter::push(IoJob j) {
  if (sync_) {
    run_job(j);
    return;
  }
  if (!th_.joinable()) th_ = std::thread([this] { io_loop(); });
  std::unique_lock<std::mutex> l(mu_);
  cv_.wait(l, [&] { return q_.size() < kMaxQueued || err_; });
  if (err_) {
    auto e = err_;
    err_ = nullptr;
    std::rethrow_exception(e);
  }
  q_.push_back(std::move(j));
  l.unlock();
  cv_.notify_all();
}

void SafetensorsWriter::write_all(int fd, size_t shard, const void* p, size_t n) {
  const char* c = static_cast<const char*>(p);
  while (n > 0) {
    ssize_t w = ::write(fd, c, n);
    if (w < 0) {
      if (errno == EINTR) continue;
      fail("cannot write {}: {}", (dir_ / files_[shard]).string(), std::strerror(errno));
    }
    c += w;
    n -= size_t(w);
  }
}

void SafetensorsWriter::run_job(IoJob& j) {
  if (j.kind == IoJob::Open || j.kind == IoJob::Close) {
    if (fd_ >= 0) ::close(fd_);
    fd_ = -1;
  }
  if (j.kind == IoJob::Open) {
    io_shard_ = j.shard;
    fs::path p = dir_ / files_[io_shard_];
    fd_ = ::open(p.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd_ < 0) fail("cannot create {}: {}", p.string(), std::strerror(errno));
    std::vector<TensorSpec> ts;
    for (size_t i : shards_[io_shard_]) ts.push_back(tensors_[i]);
    std::string h = safetensors_header(ts, metadata_);
    write_all(fd_, io_shard_, h.data(), h.size());
  } else if (j.kind == IoJob::Data) {
    write_all(fd_, io_shard_, j.data.data(), j.data.size());
  }
}

void SafetensorsWriter::io_loop() {
  bool failed = false;
  for (;;) {
    IoJob j;
    {
      std::unique_lock<std::mutex> l(mu_);
      cv_.wait(l, [&] { return !q_.empty(); });
      j = std::move(q_.front());
      q_.pop_front();
    }
    cv_.notify_all();
    if (!failed) {
      try {
        run_job(j);
      } catch (...) {
        failed = true;
        std::lock_guard<std::mutex> l(mu_);
        err_ = std::current_exception();
      }
    }
    if (j.kind == IoJob::Data) {
      std::lock_guard<std::mutex> l(mu_);
      if (spare_.size() < kMaxQueued) spare_.push_back(std::move(j.data));
    }
    cv_.notify_all();
    if (j.kind == IoJob::Close) {
      if (fd_ >= 0) ::close(fd_);
      fd_ = -1;
      std::lock_guard<std::mutex> l(mu_);
      if (stop_) return;
    }
  }
}

void SafetensorsWriter::flush() {
  if (!buf_used_) return;
  if (sync_) {
    write_all(fd_, io_shard_, buf_.data(), buf_used_);
    buf_used_ = 0;
    return;
  }
  buf_.resize(buf_used_);
  std::vector<char> next;
  {
    std::lock_guard<std::mutex> l(mu_);
    if (!spare_.empty()) {
      next = std::move(spare_.back());
      spare_.pop_back();
    }
  }
  push({IoJob::Data, 0, std::move(buf_)});
  buf_ = std::move(next);
  buf_.resize(kBufBytes);
  buf_used_ = 0;
}

void SafetensorsWriter::open_shard(size_t s) {
  flush();
  open_shard_ = s;
  push({IoJob::Open, s, {}});
}

uint64_t SafetensorsWriter::remaining_in_current() const {
  return cur_ < tensors_.size() ? tensors_[cur_].nbytes() - written_in_cur_ : 0;
}

void SafetensorsWriter::append(const void* data, size_t n) {
  if (n == 0) return;
  check_error();
  if (cur_ >= tensors_.size()) fail("{}: writer: data beyond the last tensor", dir_.string());
  if (n > remaining_in_current())
    fail("{}: writer: {} bytes for tensor '{}' which has only {} left", dir_.string(), n, tensors_[cur_].name,
         remaining_in_current());
  const char* c = static_cast<const char*>(data);
  size_t left = n;
  if (sync_ && n >= kDirectBytes) {
    flush();
    write_all(fd_, io_shard_, c, n);
    left = 0;
  }
  while (left > 0) {
    size_t k = std::min(left, buf_.size() - buf_used_);
    std::memcpy(buf_.data() + buf_used_, c, k);
    buf_used_ += k;
    c += k;
    left -= k;
    if (buf_used_ == buf_.size()) flush();
  }
  written_in_cur_ += n;
  while (cur_ < tensors_.size() && written_in_cur_ == tensors_[cur_].nbytes()) {
    ++cur_;
    written_in_cur_ = 0;
    if (cur_ < tensors_.size() && shard_of_[cur_] != open_shard_) open_shard(shard_of_[cur_]);
  }
}

void SafetensorsWriter::finish() {
  if (finished_) return;
  if (cur_ < tensors_.size())
    fail("{}: writer: tensor '{}' incomplete ({} of {} bytes)", dir_.string(), tensors_[cur_].name, written_in_cur_,
         tensors_[cur_].nbytes());
  // Shards after the last non-empty tensor (only zero-byte tensors) still need headers.
  for (size_t s = open_shard_ + 1; s < shards_.size(); ++s) open_shard(s);
  flush();
  stop_thread();
  check_error();
  if (fd_ >= 0) {
    const int fd = fd_;
    fd_ = -1;
    if (::close(fd) != 0) fail("cannot close {}: {}", (dir_ / files_[io_shard_]).string(), std::strerror(errno));
  }
  if (files_.size() > 1) {
    json idx;
    idx["metadata"] = {{"total_size", total_}};
    idx["weight_map"] = weight_map_;
    write_file_atomic(dir_ / "model.safetensors.index.json", idx.dump(2) + "\n");
  }
  finished_ = true;
}

void write_safetensors_file(const fs::path& path, const std::vector<TensorSpec>& tensors,
                            const std::vector<const void*>& data, const std::map<std::string, std::string>& metadata) {
  std::string img = safetensors_header(tensors, metadata);
  for (size_t i = 0; i < tensors.size(); ++i)
    img.append(static_cast<const char*>(data[i]), tensors[i].nbytes());
  write_file_atomic(path, img);
}

}  // namespace rvec::io
