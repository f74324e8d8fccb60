// StagedFdSource over a real socket (bytes come out whole and in order whatever the
// read-ahead, and a large read-ahead really saves syscalls), and the receive machine's
// read-ahead policy (far ahead while FPDUs are small, near while they are large).
#include "iser/transport/rdma/softiwarp/byte_io.h"

#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <random>

#include "gtest/gtest.h"
#include "iser/base/unique_fd.h"
#include "iser/transport/rdma/softiwarp/rx.h"
#include "tests/iser/transport/rdma/softiwarp/test_util.h"

namespace iser::softiwarp {
namespace {

struct SocketPair {
  SocketPair() {
    int fds[2];
    EXPECT_EQ(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, fds), 0);
    reader = UniqueFd(fds[0]);
    writer = UniqueFd(fds[1]);
    int big = 4 << 20;
    setsockopt(writer.get(), SOL_SOCKET, SO_SNDBUF, &big, sizeof(big));
    setsockopt(reader.get(), SOL_SOCKET, SO_RCVBUF, &big, sizeof(big));
  }
  void Write(const std::vector<uint8_t>& data) {
    size_t done = 0;
    while (done < data.size()) {
      ssize_t n = ::write(writer.get(), data.data() + done, data.size() - done);
      ASSERT_GT(n, 0) << std::strerror(errno);
      done += static_cast<size_t>(n);
    }
  }
  UniqueFd reader, writer;
};

std::vector<uint8_t> Pattern(size_t n) {
  std::vector<uint8_t> v(n);
  for (size_t i = 0; i < n; ++i) v[i] = static_cast<uint8_t>(i * 131 + (i >> 9));
  return v;
}

// Reads exactly `n` bytes as requests of `sizes` (cycled; each split over two iovecs
// when it has two bytes or more), changing the read-ahead to `read_aheads` (cycled)
// before every request.
std::vector<uint8_t> ReadAll(StagedFdSource& src, size_t n, const std::vector<size_t>& sizes,
                             const std::vector<size_t>& read_aheads) {
  std::vector<uint8_t> out(n);
  size_t got = 0;
  for (size_t k = 0; got < n; ++k) {
    src.SetReadAhead(read_aheads[k % read_aheads.size()]);
    size_t want = std::min(sizes[k % sizes.size()], n - got);
    size_t half = want / 2;
    iovec iov[2] = {{out.data() + got, half}, {out.data() + got + half, want - half}};
    ssize_t r = half == 0 ? src.Readv(&iov[1], 1) : src.Readv(iov, 2);
    if (r == -EAGAIN) {
      ADD_FAILURE() << "source ran dry at " << got << " of " << n;
      break;
    }
    EXPECT_GT(r, 0);
    if (r <= 0) break;
    got += static_cast<size_t>(r);
  }
  return out;
}

TEST(StagedFdSourceTest, BytesArriveWholeAndInOrderWhateverTheReadAhead) {
  const std::vector<uint8_t> data = Pattern(600 << 10);
  const std::vector<std::vector<size_t>> read_aheads = {
      {4096}, {65536}, {64}, {4096, 65536, 100, 1 << 20}};
  for (const auto& ra : read_aheads) {
    SocketPair sp;
    sp.Write(data);
    StagedFdSource src(sp.reader.get());
    // Header-sized, payload-sized and odd requests, mixing staged and direct reads.
    std::vector<uint8_t> got = ReadAll(src, data.size(), {16, 4096, 4, 65462, 20, 3000, 1}, ra);
    EXPECT_TRUE(got == data) << "read-ahead pattern starting " << ra[0];
    EXPECT_EQ(src.staged(), 0u);
    uint8_t b;
    iovec iov{&b, 1};
    EXPECT_EQ(src.Readv(&iov, 1), -EAGAIN);
  }
}

TEST(StagedFdSourceTest, ReadAheadIsClampedToTheStagingBuffer) {
  SocketPair sp;
  StagedFdSource src(sp.reader.get(), 8192);
  src.SetReadAhead(1 << 20);
  EXPECT_EQ(src.read_ahead(), 8192u);
  src.SetReadAhead(0);
  EXPECT_EQ(src.read_ahead(), 64u);  // always room for a header and a trailer
}

TEST(StagedFdSourceTest, FarReadAheadServesManySmallMessagesPerSyscall) {
  // 64 messages of a 20-byte header and a 4 KiB payload, all in the socket already.
  std::vector<uint8_t> data = Pattern(64 * (20 + 4096));
  std::vector<size_t> sizes = {20, 4096};
  uint64_t syscalls[2];
  for (int far = 0; far < 2; ++far) {
    SocketPair sp;
    sp.Write(data);
    StagedFdSource src(sp.reader.get());
    std::vector<uint8_t> got = ReadAll(src, data.size(), sizes, {far ? size_t{65536} : 4096});
    EXPECT_TRUE(got == data);
    syscalls[far] = src.syscalls();
  }
  // Near: about one syscall per message. Far: one per ~16 messages.
  EXPECT_GE(syscalls[0], 60u);
  EXPECT_LE(syscalls[1], 8u);
}

TEST(StagedFdSourceTest, ShortReadSkipsTheEagainSyscallThatWouldFollow) {
  for (size_t want : {size_t{16}, size_t{8192}}) {  // a staged read and a direct read
    SocketPair sp;
    std::vector<uint8_t> data = Pattern(1000);
    sp.Write(data);
    StagedFdSource src(sp.reader.get());
    std::vector<uint8_t> out(8192);
    size_t got = 0;
    while (got < data.size()) {
      iovec iov{out.data() + got, std::min(want, data.size() - got)};
      ssize_t r = src.Readv(&iov, 1);
      ASSERT_GT(r, 0) << "want " << want;
      got += static_cast<size_t>(r);
    }
    EXPECT_TRUE(std::equal(data.begin(), data.end(), out.begin()));
    uint64_t before = src.syscalls();
    iovec iov{out.data(), want};
    EXPECT_EQ(src.Readv(&iov, 1), -EAGAIN);  // the socket came up short: no syscall
    EXPECT_EQ(src.syscalls(), before) << "want " << want;
    // The next call (after a wakeup) reads again and sees what arrived since.
    sp.Write(Pattern(10));
    EXPECT_EQ(src.Readv(&iov, 1), 10);
    EXPECT_EQ(src.syscalls(), before + 1);
  }
}

// A ByteSource over memory that records the read-ahead it was told.
class RecordingSource : public ByteSource {
 public:
  explicit RecordingSource(std::span<const uint8_t> data) : mem_(data, 1 << 20, false) {}
  ssize_t Readv(const iovec* iov, int iovcnt) override { return mem_.Readv(iov, iovcnt); }
  void SetReadAhead(size_t bytes) override { read_aheads.push_back(bytes); }
  std::vector<size_t> read_aheads;

 private:
  MemoryByteSource mem_;
};

class DiscardHandler : public RxHandler {
 public:
  std::optional<TermError> OnSegmentHeader(const RxSegment& seg, std::vector<iovec>* dst) override {
    sink.resize(std::max<size_t>(sink.size(), seg.payload_len));
    if (seg.payload_len > 0) dst->push_back({sink.data(), seg.payload_len});
    return std::nullopt;
  }
  std::optional<TermError> OnSegmentDone(const RxSegment&) override {
    ++done;
    return std::nullopt;
  }
  std::vector<uint8_t> sink;
  int done = 0;
};

TEST(RxReadAheadTest, FarWhileFpdusAreSmallNearWhileTheyAreLarge) {
  using testing::Append;
  using testing::Fpdu;
  std::vector<uint8_t> stream;
  std::vector<uint8_t> small(4096, 0x11), large(65000, 0x22);
  // A 4 KiB workload: Sends and RDMA Writes of 4 KiB and short Sends.
  for (uint32_t i = 0; i < 20; ++i) {
    Append(&stream, Fpdu(testing::WriteHdr(7, 0), small));
    Append(&stream, Fpdu(testing::SendHdr(i + 1, 0), std::span<const uint8_t>(small).first(50)));
  }
  // Then a 128 KiB workload: two large FPDUs, a short tail and a short Send each.
  for (uint32_t i = 0; i < 10; ++i) {
    Append(&stream, Fpdu(testing::ReadResponseHdr(9, 0, false), large));
    Append(&stream, Fpdu(testing::ReadResponseHdr(9, 65000, false), large));
    Append(&stream, Fpdu(testing::ReadResponseHdr(9, 130000, true),
                         std::span<const uint8_t>(large).first(1072)));
    Append(&stream, Fpdu(testing::SendHdr(21 + i, 0), std::span<const uint8_t>(small).first(50)));
  }
  // And back to small ones.
  for (uint32_t i = 0; i < 20; ++i)
    Append(&stream, Fpdu(testing::SendHdr(31 + i, 0), std::span<const uint8_t>(small)));

  RecordingSource src(stream);
  DiscardHandler h;
  RxMachine rx(&h, true);
  EXPECT_EQ(rx.Pump(src), RxMachine::Outcome::kWouldBlock);
  EXPECT_EQ(h.done, 40 + 40 + 20);
  // Told once per change of regime, never flapping inside one: far, near, far.
  ASSERT_EQ(src.read_aheads.size(), 3u);
  EXPECT_EQ(src.read_aheads[0], 64u << 10);
  EXPECT_EQ(src.read_aheads[1], 4u << 10);
  EXPECT_EQ(src.read_aheads[2], 64u << 10);
}

}  // namespace
}  // namespace iser::softiwarp
