// Our initiator against a target nobody here wrote: Debian's tgt (tgtd) with a file LUN.
// Skips (saying why) when tgtd is not installed or cannot start.
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <future>
#include <random>
#include <string>

#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"
#include "iser/initiator/sync_initiator.h"
#include "tests/iser/initiator/initiator_test_util.h"

namespace iser::initiator {
namespace {

constexpr char kTgtd[] = "/usr/sbin/tgtd";
constexpr char kTgtIqn[] = "iqn.2026-11.org.iser-csi:tgt-interop";
constexpr uint64_t kTgtLunBytes = 64 << 20;

uint16_t FreePort() {
  int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof(a));
  socklen_t len = sizeof(a);
  ::getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len);
  ::close(fd);
  return ntohs(a.sin_port);
}

class Tgt {
 public:
  // Empty on success, else why the test must skip.
  std::string Start() {
    if (::access(kTgtd, X_OK) != 0) return absl::StrCat(kTgtd, " not found (Debian package tgt)");
    std::random_device rd;
    control_port_ = 1000 + static_cast<int>(rd() % 31000);
    port_ = FreePort();
    char dir_template[] = "/tmp/iser-tgt-XXXXXX";
    if (::mkdtemp(dir_template) == nullptr) return "mkdtemp failed";
    dir_ = dir_template;
    backing_ = dir_ + "/lun1.img";
    if (::truncate(backing_.c_str(), 0) != 0) {
      std::ofstream(backing_).close();
    }
    if (::truncate(backing_.c_str(), kTgtLunBytes) != 0) return "cannot create backing file";
    std::string portal = absl::StrCat("portal=127.0.0.1:", port_);
    std::string cport = std::to_string(control_port_);
    std::string log = dir_ + "/tgtd.log";
    pid_ = ::fork();
    if (pid_ == 0) {
      ::setsid();
      FILE* f = std::fopen(log.c_str(), "w");
      if (f != nullptr) {
        ::dup2(fileno(f), 1);
        ::dup2(fileno(f), 2);
      }
      ::execl(kTgtd, "tgtd", "-f", "-C", cport.c_str(), "--iscsi", portal.c_str(),
              static_cast<char*>(nullptr));
      _exit(127);
    }
    if (pid_ < 0) return "fork failed";
    bool up = false;
    for (int i = 0; i < 100 && !up; ++i) {
      up = Adm("--op show --mode target") == 0;
      if (!up) ::usleep(50000);
    }
    if (!up) return absl::StrCat("tgtd did not start (see ", log, ")");
    if (Adm(absl::StrCat("--op new --mode target --tid 1 -T ", kTgtIqn)) != 0 ||
        Adm(absl::StrCat("--op new --mode logicalunit --tid 1 --lun 1 -b ", backing_)) != 0 ||
        Adm("--op bind --mode target --tid 1 -I ALL") != 0) {
      return "tgtadm could not configure the target";
    }
    return "";
  }

  void Stop() {
    if (pid_ > 0) {
      Adm("--op delete --mode logicalunit --tid 1 --lun 1");
      Adm("--op delete --mode target --tid 1 --force");
      ::kill(pid_, SIGKILL);
      ::waitpid(pid_, nullptr, 0);
      pid_ = -1;
    }
    if (!dir_.empty()) {
      std::system(absl::StrCat("rm -rf ", dir_).c_str());
      dir_.clear();
    }
  }

  int Adm(const std::string& args) {
    std::string cmd =
        absl::StrCat("tgtadm -C ", control_port_, " --lld iscsi ", args, " >/dev/null 2>&1");
    return std::system(cmd.c_str());
  }

  std::string portal() const { return absl::StrCat("127.0.0.1:", port_); }

 private:
  pid_t pid_ = -1;
  int control_port_ = 0;
  uint16_t port_ = 0;
  std::string dir_;
  std::string backing_;
};

class TgtInterop : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    tgt_ = new Tgt();
    skip_reason_ = new std::string(tgt_->Start());
  }
  static void TearDownTestSuite() {
    tgt_->Stop();
    delete tgt_;
    delete skip_reason_;
  }
  void SetUp() override {
    if (!skip_reason_->empty()) GTEST_SKIP() << "skipping tgt interop: " << *skip_reason_;
  }
  SessionConfig Config() {
    SessionConfig c;
    c.portal = tgt_->portal();
    c.initiator_name = testing::kInitiatorIqn;
    c.target_name = kTgtIqn;
    c.reconnect_backoff_initial = absl::Milliseconds(50);
    return c;
  }
  static Tgt* tgt_;
  static std::string* skip_reason_;
};
Tgt* TgtInterop::tgt_ = nullptr;
std::string* TgtInterop::skip_reason_ = nullptr;

TEST_F(TgtInterop, DiscoveryFindsTheTarget) {
  auto targets = SyncInitiator::Discover(Config());
  ASSERT_TRUE(targets.ok()) << targets.status();
  bool found = false;
  for (const DiscoveredTarget& t : *targets) found |= t.name == kTgtIqn;
  EXPECT_TRUE(found);
}

TEST_F(TgtInterop, WrongIqnIsNotFound) {
  SessionConfig c = Config();
  c.target_name = "iqn.2026-11.org.iser-csi:no-such-target";
  auto ini = SyncInitiator::Connect(c);
  ASSERT_FALSE(ini.ok());
  EXPECT_EQ(ini.status().code(), absl::StatusCode::kNotFound) << ini.status();
}

TEST_F(TgtInterop, ReadWriteRoundTrips) {
  auto ini = SyncInitiator::Connect(Config());
  ASSERT_TRUE(ini.ok()) << ini.status();
  auto lun = (*ini)->OpenLun(1);
  ASSERT_TRUE(lun.ok()) << lun.status();
  EXPECT_EQ((*lun)->capacity_bytes(), kTgtLunBytes);
  uint64_t lba = 0;
  int seed = 11;
  for (size_t bytes : {512ul, 4096ul, 65536ul, 262144ul + 512, 1048576ul, 3145728ul}) {
    std::vector<uint8_t> data = testing::Pattern(bytes, seed++);
    ASSERT_TRUE((*ini)->Write(*lun, lba, data).ok()) << bytes;
    std::vector<uint8_t> back(bytes);
    ASSERT_TRUE((*ini)->Read(*lun, lba, back).ok()) << bytes;
    ASSERT_EQ(back, data) << bytes;
    lba += bytes / 512 + 8;
  }
  EXPECT_TRUE((*ini)->Flush(*lun).ok());
  auto missing = (*ini)->OpenLun(5);
  EXPECT_FALSE(missing.ok());
}

TEST_F(TgtInterop, ConcurrentWritesSurviveAConnectionDrop) {
  auto ini = SyncInitiator::Connect(Config());
  ASSERT_TRUE(ini.ok()) << ini.status();
  auto lun = (*ini)->OpenLun(1);
  ASSERT_TRUE(lun.ok()) << lun.status();
  constexpr int kCount = 200;
  std::vector<std::vector<uint8_t>> bufs;
  for (int i = 0; i < kCount; ++i) bufs.push_back(testing::Pattern(16384, 700 + i));
  std::vector<int> completions(kCount, 0);
  std::atomic<int> failed{0};
  std::atomic<int> done{0};
  std::promise<void> all;
  (*ini)->RunOnLoop([&] {
    for (int i = 0; i < kCount; ++i) {
      (*lun)->Write(40000 + i * 32, bufs[i], [&, i](absl::Status s) {
        ++completions[i];
        if (!s.ok()) ++failed;
        if (++done == kCount) all.set_value();
      });
    }
    (*ini)->session()->DropConnection();  // mid-stream: most are in flight
  });
  ASSERT_EQ(all.get_future().wait_for(std::chrono::seconds(60)), std::future_status::ready);
  EXPECT_EQ(failed, 0);
  for (int i = 0; i < kCount; ++i) {
    ASSERT_EQ(completions[i], 1) << i;
    std::vector<uint8_t> back(16384);
    ASSERT_TRUE((*ini)->Read(*lun, 40000 + i * 32, back).ok());
    ASSERT_EQ(back, bufs[i]) << i;
  }
}

}  // namespace
}  // namespace iser::initiator
