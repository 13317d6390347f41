// Streaming safetensors writer: the names, dtypes and shapes of all tensors are
// known up front, so each shard's header is written first and tensor data is then
// appended in order, chunk by chunk, through a large buffer (never a whole model in
// memory). Shards: greedy in tensor order up to `shard_size` bytes of tensor data
// (a tensor larger than that gets a shard of its own); one shard is written as
// model.safetensors, several as model-0000i-of-0000K.safetensors plus
// model.safetensors.index.json ({"metadata": {"total_size"}, "weight_map"}).
// Header metadata is {"format": "pt"} plus the caller's `metadata` (every shard); headers are space-padded to 8 bytes as HF does.
// Background mode (default): the write() calls run on a background thread (a queue of a
// few 8 MB buffers), so computing the next chunk overlaps writing the previous one; I/O
// errors surface on the next append() or in finish(). Synchronous mode: for callers that
// already write from their own I/O thread; appends of 256 KB or more are written straight
// from the caller's memory (no copy), smaller ones are gathered into the buffer.
#pragma once
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <exception>
#include <filesystem>
#include <map>
#include <mutex>
#include <thread>
#include <string>
#include <vector>

#include "core/dtype.h"

namespace rvec::io {

constexpr uint64_t kDefaultShardSize = 5'000'000'000ull;  // 5 GB, as transformers' save_pretrained

struct TensorSpec {
  std::string name;
  DType dtype = DType::F32;
  std::vector<int64_t> shape;
  uint64_t numel() const;
  uint64_t nbytes() const { return numel() * dtype_size(dtype); }
};

class SafetensorsWriter {
 public:
  // Creates the shard files in `dir` (which must exist) and writes their headers.
  enum class Mode { Background, Synchronous };
  SafetensorsWriter(const std::filesystem::path& dir, std::vector<TensorSpec> tensors,
                    uint64_t shard_size = kDefaultShardSize, Mode mode = Mode::Background,
                    std::map<std::string, std::string> metadata = {});
  ~SafetensorsWriter();
  SafetensorsWriter(const SafetensorsWriter&) = delete;
  SafetensorsWriter& operator=(const SafetensorsWriter&) = delete;

  // Appends bytes of the current tensor (tensors are filled in the order given;
  // a call never spans two tensors). Moves to the next tensor when one is full.
  void append(const void* data, size_t n);
  // Index of the tensor being filled (== tensors().size() when all are complete).
  size_t current() const { return cur_; }
  uint64_t remaining_in_current() const;
  // Flushes, fsyncs, closes the files and writes the index when sharded. Throws if
  // some tensor is incomplete.
  void finish();

  const std::vector<TensorSpec>& tensors() const { return tensors_; }
  const std::vector<std::string>& files() const { return files_; }  // file names
  const std::map<std::string, std::string>& weight_map() const { return weight_map_; }
  uint64_t total_size() const { return total_; }

 private:
  struct IoJob {
    enum Kind { Open, Data, Close } kind;
    size_t shard = 0;
    std::vector<char> data;
  };
  void open_shard(size_t s);  // queues: close the previous shard, open s, write its header
  void flush();               // queues the fill buffer
  void push(IoJob j);
  void io_loop();
  void run_job(IoJob& j);     // on the I/O thread, or inline in synchronous mode
  void check_error();
  void write_all(int fd, size_t shard, const void* p, size_t n);
  void stop_thread();
  std::filesystem::path dir_;
  std::vector<TensorSpec> tensors_;
  std::map<std::string, std::string> metadata_;
  std::vector<size_t> shard_of_;              // tensor -> shard
  std::vector<std::vector<size_t>> shards_;   // shard -> tensors
  std::vector<std::string> files_;
  std::map<std::string, std::string> weight_map_;
  uint64_t total_ = 0;
  size_t cur_ = 0, open_shard_ = size_t(-1);
  uint64_t written_in_cur_ = 0;
  std::vector<char> buf_;
  size_t buf_used_ = 0;
  bool finished_ = false;
  bool sync_ = false;
  int fd_ = -1;               // owned by the I/O thread (or the caller in synchronous mode)
  size_t io_shard_ = 0;
  // background I/O
  std::thread th_;
  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<IoJob> q_;
  std::vector<std::vector<char>> spare_;
  std::exception_ptr err_;
  bool stop_ = false;
};

// Builds the header bytes (u64 length + padded JSON) for tensors laid out in order.
std::string safetensors_header(const std::vector<TensorSpec>& tensors,
                               const std::map<std::string, std::string>& metadata = {});

// Writes a complete single-file safetensors image from in-memory tensor data (for
// tests and small outputs). data[i] must hold tensors[i].nbytes() bytes.
void write_safetensors_file(const std::filesystem::path& path, const std::vector<TensorSpec>& tensors,
                            const std::vector<const void*>& data,
                            const std::map<std::string, std::string>& metadata = {});

}  // namespace rvec::io
