// SPDX-License-Identifier: MIT
pragma solidity ^0.8.20;

/// @title Bytes32Token
/// @notice An ERC-20 whose name() and symbol() return bytes32, as MKR and SAI do on
///         mainnet. Devnet only: anyone may mint.
contract Bytes32Token {
    bytes32 public immutable name;
    bytes32 public immutable symbol;
    uint8 public constant decimals = 18;
    uint256 public totalSupply;
    mapping(address => uint256) public balanceOf;

    constructor(bytes32 name_, bytes32 symbol_) {
        name = name_;
        symbol = symbol_;
    }

    function mint(address to, uint256 amount) external {
        totalSupply += amount;
        balanceOf[to] += amount;
    }
}
