# SPDX-License-Identifier: MIT

def tests():
    return []
