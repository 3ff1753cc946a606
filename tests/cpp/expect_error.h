// Shared by the ATen-linked GoogleTest files: the message of a c10::Error.
#pragma once

#include <gtest/gtest.h>

#include <exception>
#include <functional>
#include <string>

#include <c10/util/Exception.h>

namespace tconv3d::test_support {

// The message of the c10::Error `f` throws; "" (and a test failure) otherwise.
inline std::string error_message(const std::function<void()>& f) {
  try {
    f();
  } catch (const c10::Error& e) {
    return e.msg();
  } catch (const std::exception& e) {
    ADD_FAILURE() << "expected c10::Error, got another exception: " << e.what();
    return "";
  }
  ADD_FAILURE() << "expected c10::Error, nothing was thrown";
  return "";
}

}  // namespace tconv3d::test_support
