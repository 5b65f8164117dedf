// SPDX-License-Identifier: MIT
pragma solidity ^0.8.20;

import {IOracle} from "@morpho-org/morpho-blue/src/interfaces/IOracle.sol";

interface IAggregatorV3 {
    function decimals() external view returns (uint8);

    function latestRoundData()
        external
        view
        returns (uint80 roundId, int256 answer, uint256 startedAt, uint256 updatedAt, uint80 answeredInRound);
}

/// @title FeedRatioOracle
/// @notice A Morpho Blue oracle over two Chainlink USD feeds: the price of one collateral
///         token in loan tokens, scaled by 1e36 as Morpho's IOracle requires,
///
///             price = base * 10^(36 + loanDecimals + quoteFeedDecimals
///                                 - collateralDecimals - baseFeedDecimals) / quote
///
///         the formula of Morpho's MorphoChainlinkOracleV2 with one base feed, one quote
///         feed and no vaults (that package is not on npm). Like it, it does not check
///         staleness: Morpho reads whatever the feeds say.
contract FeedRatioOracle is IOracle {
    error NonPositiveAnswer();
    error NegativeScale();

    IAggregatorV3 public immutable BASE_FEED;
    IAggregatorV3 public immutable QUOTE_FEED;
    uint256 public immutable SCALE_FACTOR;

    constructor(address baseFeed, address quoteFeed, uint8 collateralDecimals, uint8 loanDecimals) {
        BASE_FEED = IAggregatorV3(baseFeed);
        QUOTE_FEED = IAggregatorV3(quoteFeed);
        int256 exponent = 36 + int256(uint256(loanDecimals)) + int256(uint256(QUOTE_FEED.decimals()))
            - int256(uint256(collateralDecimals)) - int256(uint256(BASE_FEED.decimals()));
        if (exponent < 0) revert NegativeScale();
        SCALE_FACTOR = 10 ** uint256(exponent);
    }

    function price() external view returns (uint256) {
        return _answer(BASE_FEED) * SCALE_FACTOR / _answer(QUOTE_FEED);
    }

    function _answer(IAggregatorV3 feed) private view returns (uint256) {
        (, int256 answer,,,) = feed.latestRoundData();
        if (answer <= 0) revert NonPositiveAnswer();
        return uint256(answer);
    }
}
