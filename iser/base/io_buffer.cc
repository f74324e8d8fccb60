#include "iser/base/io_buffer.h"

#include <cstdlib>
#include <vector>

namespace iser {
namespace {

constexpr int kMinClass = 12;  // 4 KiB
constexpr int kMaxClass = 24;  // 16 MiB; larger buffers are not pooled
constexpr size_t kMaxCachedBytesPerClass = 32 << 20;

struct FreeLists {
  std::vector<uint8_t*> lists[kMaxClass + 1];
  ~FreeLists() {
    for (auto& l : lists)
      for (uint8_t* p : l) std::free(p);
  }
};
thread_local FreeLists t_free;

int ClassFor(size_t size) {
  int c = kMinClass;
  while ((size_t{1} << c) < size) ++c;
  return c;
}

}  // namespace

IoBuffer IoBuffer::Allocate(size_t size) {
  IoBuffer b;
  if (size == 0) return b;
  int c = ClassFor(size);
  b.size_ = size;
  if (c <= kMaxClass) {
    auto& list = t_free.lists[c];
    b.size_class_ = c;
    if (!list.empty()) {
      b.data_ = list.back();
      list.pop_back();
      return b;
    }
    b.data_ = static_cast<uint8_t*>(std::aligned_alloc(4096, size_t{1} << c));
  } else {
    b.size_class_ = -1;
    b.data_ = static_cast<uint8_t*>(std::aligned_alloc(4096, (size + 4095) & ~size_t{4095}));
  }
  return b;
}

void IoBuffer::Release() {
  if (data_ == nullptr) return;
  if (size_class_ >= 0) {
    auto& list = t_free.lists[size_class_];
    if (list.size() * (size_t{1} << size_class_) < kMaxCachedBytesPerClass) {
      list.push_back(data_);
      data_ = nullptr;
      return;
    }
  }
  std::free(data_);
  data_ = nullptr;
}

}  // namespace iser
