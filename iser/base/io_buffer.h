// Page-aligned I/O buffers recycled through per-thread free lists.
//
// Command data (read and write payload) lives in an IoBuffer from the moment it leaves or
// enters the socket until the store is done with it; malloc'ing 128 KiB per command would
// mmap/munmap on every I/O. Buffers are returned to the free list of the thread that
// releases them, so each event loop's pool stays warm with no locking.
#ifndef ISER_BASE_IO_BUFFER_H_
#define ISER_BASE_IO_BUFFER_H_

#include <cstddef>
#include <cstdint>
#include <span>
#include <utility>

namespace iser {

class IoBuffer {
 public:
  IoBuffer() = default;
  // A buffer of at least `size` bytes (size() reports `size`), 4096-byte aligned.
  static IoBuffer Allocate(size_t size);
  ~IoBuffer() { Release(); }
  IoBuffer(IoBuffer&& o) noexcept
      : data_(std::exchange(o.data_, nullptr)),
        size_(std::exchange(o.size_, 0)),
        size_class_(o.size_class_) {}
  IoBuffer& operator=(IoBuffer&& o) noexcept {
    if (this != &o) {
      Release();
      data_ = std::exchange(o.data_, nullptr);
      size_ = std::exchange(o.size_, 0);
      size_class_ = o.size_class_;
    }
    return *this;
  }
  IoBuffer(const IoBuffer&) = delete;
  IoBuffer& operator=(const IoBuffer&) = delete;

  uint8_t* data() const { return data_; }
  size_t size() const { return size_; }
  bool empty() const { return size_ == 0; }
  std::span<uint8_t> span() const { return {data_, size_}; }

 private:
  void Release();
  uint8_t* data_ = nullptr;
  size_t size_ = 0;
  int size_class_ = -1;  // log2 of the capacity for pooled buffers, -1 for none
};

}  // namespace iser

#endif  // ISER_BASE_IO_BUFFER_H_
